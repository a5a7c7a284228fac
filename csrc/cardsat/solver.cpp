// cardsat: CDCL with native reified cardinality constraints. See solver.hpp for the overview.
#include "solver.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace cardsat {

namespace {

double luby(double y, uint64_t x) {
  // Luby sequence (MiniSat): y^k for the x-th element
  uint64_t size = 1;
  int seq = 0;
  while (size < x + 1) {
    ++seq;
    size = 2 * size + 1;
  }
  while (size - 1 != x) {
    size = (size - 1) >> 1;
    --seq;
    x = x % size;
  }
  return std::pow(y, seq);
}

}  // namespace

Solver::Solver() { level_stamp_.push_back(0); }

// ---------------------------------------------------------------- variables

Var Solver::new_var() {
  const Var v = static_cast<Var>(vinfo_.size());
  vals_.push_back(0);
  vals_.push_back(0);
  vinfo_.push_back({kNoReason, 0, 0, 0});
  activity_.push_back(0.0);
  prio_.push_back(0);
  phase_.push_back(opts_.default_negative ? 1 : 0);
  fixed_phase_.push_back(opts_.default_negative ? 1 : 0);
  seen_.push_back(0);
  base_seen_.push_back(0);
  heap_idx_.push_back(-1);
  watches_.emplace_back();
  watches_.emplace_back();
  card_occ_.emplace_back();
  card_occ_.emplace_back();
  expl_stamp_.push_back(0);
  expl_begin_.push_back(0);
  expl_size_.push_back(0);
  level_stamp_.push_back(0);
  tmp_weight_.push_back(0);
  tmp_weight_.push_back(0);
  assumed_.push_back(0);
  int2user_.push_back(0);
  heap_insert(v);
  return v;
}

void Solver::reserve_vars(int n) {
  while (static_cast<int>(user2int_.size()) < n) {
    const Var v = new_var();
    user2int_.push_back(v);
    int2user_[v] = static_cast<int>(user2int_.size());
  }
}

Lit Solver::to_lit(int dimacs) {
  if (dimacs == 0) throw std::invalid_argument("cardsat: literal 0 is not a literal");
  const int v = std::abs(dimacs);
  if (v > static_cast<int>(user2int_.size())) reserve_vars(v);
  return make_lit(user2int_[v - 1], dimacs < 0);
}

int Solver::to_dimacs(Lit l) const {
  const int u = int2user_[lit_var(l)];
  return lit_negated(l) ? -u : u;
}

// ---------------------------------------------------------------- heap

void Solver::heap_up(uint32_t i) {
  const Var v = heap_[i];
  while (i > 0) {
    const uint32_t parent = (i - 1) >> 1;
    if (!heap_before(v, heap_[parent])) break;
    heap_[i] = heap_[parent];
    heap_idx_[heap_[i]] = static_cast<int32_t>(i);
    i = parent;
  }
  heap_[i] = v;
  heap_idx_[v] = static_cast<int32_t>(i);
}

void Solver::heap_down(uint32_t i) {
  const Var v = heap_[i];
  const uint32_t n = static_cast<uint32_t>(heap_.size());
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_before(heap_[child + 1], heap_[child])) ++child;
    if (!heap_before(heap_[child], v)) break;
    heap_[i] = heap_[child];
    heap_idx_[heap_[i]] = static_cast<int32_t>(i);
    i = child;
  }
  heap_[i] = v;
  heap_idx_[v] = static_cast<int32_t>(i);
}

void Solver::heap_insert(Var v) {
  heap_idx_[v] = static_cast<int32_t>(heap_.size());
  heap_.push_back(v);
  heap_up(static_cast<uint32_t>(heap_.size() - 1));
}

Var Solver::heap_pop() {
  const Var top = heap_[0];
  const Var last = heap_.back();
  heap_.pop_back();
  heap_idx_[top] = -1;
  if (!heap_.empty()) {
    heap_[0] = last;
    heap_idx_[last] = 0;
    heap_down(0);
  }
  return top;
}

void Solver::heap_rebuild() {
  for (Var v : heap_) heap_idx_[v] = -1;
  heap_.clear();
  for (Var v = 0; v < vinfo_.size(); ++v) {
    if (vals_[make_lit(v, false)] == 0) heap_insert(v);
  }
}

void Solver::bump_var(Var v) {
  if ((activity_[v] += var_inc_) > 1e100) {
    for (double& a : activity_) a *= 1e-100;
    var_inc_ *= 1e-100;
  }
  if (heap_idx_[v] >= 0) heap_up(static_cast<uint32_t>(heap_idx_[v]));
}

void Solver::set_priority(const std::vector<int>& vars, int priority) {
  cancel_until(0);
  for (int d : vars) prio_[lit_var(to_lit(std::abs(d)))] = priority;
  has_prio_ = std::any_of(prio_.begin(), prio_.end(), [](int32_t x) { return x != 0; });
  prio_active_ = has_prio_;
  heap_rebuild();
}

void Solver::set_prio_active(bool on) {
  if (prio_active_ == on) return;
  prio_active_ = on;
  heap_rebuild();
}

bool Solver::prio_switch_due() const {
  return has_prio_ && opts_.priority_mode == 1 && stats_.conflicts >= prio_epoch_end_;
}

void Solver::bump_activity(const std::vector<int>& vars, double amount) {
  cancel_until(0);
  for (int d : vars) activity_[lit_var(to_lit(std::abs(d)))] += amount;
  heap_rebuild();
}

void Solver::set_phases(const std::vector<int>& lits) {
  for (int d : lits) {
    const Lit l = to_lit(d);
    phase_[lit_var(l)] = lit_negated(l) ? 1 : 0;
    fixed_phase_[lit_var(l)] = lit_negated(l) ? 1 : 0;
  }
}

// ---------------------------------------------------------------- clauses

void Solver::set_lbd_tier(uint32_t cr, uint32_t lbd) {
  uint32_t tier = 2;
  if (lbd <= static_cast<uint32_t>(opts_.core_lbd)) {
    tier = 0;
  } else if (lbd <= static_cast<uint32_t>(opts_.tier2_lbd)) {
    tier = 1;
  }
  uint32_t& fl = cflags(cr);
  fl = (fl & 0xFFu & ~kTierMask) | (tier << kTierShift) | (std::min(lbd, 0xFFFFFFu) << 8);
}

uint32_t Solver::alloc_clause(const Lit* lits, uint32_t n, bool learnt) {
  const uint32_t cr = static_cast<uint32_t>(arena_.size());
  if (arena_.size() + kHeader + n >= kBinary) throw std::length_error("cardsat: clause arena full");
  arena_.push_back(n);
  arena_.push_back(learnt ? kLearnt : 0u);
  arena_.push_back(0);
  arena_.insert(arena_.end(), lits, lits + n);
  cactivity(cr) = 0.0f;
  return cr;
}

void Solver::attach(uint32_t cr) {
  const Lit* c = clits(cr);
  if (csize(cr) == 2) {
    watches_[c[0]].push_back({cr | kBinary, c[1]});
    watches_[c[1]].push_back({cr | kBinary, c[0]});
  } else {
    watches_[c[0]].push_back({cr, c[1]});
    watches_[c[1]].push_back({cr, c[0]});
  }
}

bool Solver::locked(uint32_t cr) {
  const Lit* c = clits(cr);
  for (int i = 0; i < (csize(cr) == 2 ? 2 : 1); ++i) {
    if (vals_[c[i]] > 0 && reason(lit_var(c[i])) == cr) return true;
  }
  return false;
}

void Solver::bump_clause(uint32_t cr) {
  float& a = cactivity(cr);
  a += static_cast<float>(cla_inc_);
  if (a > 1e20f) {
    for (uint32_t l : learnts_) cactivity(l) *= 1e-20f;
    cla_inc_ *= 1e-20;
  }
}

bool Solver::add_clause(const std::vector<int>& dimacs) {
  tmp_lits_.clear();
  for (int d : dimacs) tmp_lits_.push_back(to_lit(d));
  return add_clause_lits(tmp_lits_);
}

bool Solver::add_clause_lits(std::vector<Lit>& lits) {
  if (!ok_) return false;
  cancel_until(0);
  std::sort(lits.begin(), lits.end());
  size_t j = 0;
  Lit prev = kLitUndef;
  for (size_t i = 0; i < lits.size(); ++i) {
    const Lit l = lits[i];
    if (vals_[l] > 0 || l == lit_not(prev)) return true;  // satisfied or tautology
    if (l == prev || vals_[l] < 0) continue;
    lits[j++] = prev = l;
  }
  lits.resize(j);
  if (lits.empty()) {
    ok_ = false;
    return false;
  }
  if (lits.size() == 1) {
    enqueue(lits[0], kNoReason, -1);
    return true;
  }
  const uint32_t cr = alloc_clause(lits.data(), static_cast<uint32_t>(lits.size()), false);
  clauses_.push_back(cr);
  attach(cr);
  return true;
}

bool Solver::add_card(int y_dimacs, const std::vector<int>& dimacs, int bound) {
  if (!ok_) return false;
  Lit y = to_lit(y_dimacs);
  std::vector<Var> vars;
  vars.reserve(dimacs.size());
  for (int d : dimacs) {
    const Lit l = to_lit(d);
    const Var v = lit_var(l);
    if (tmp_weight_[2 * v] == 0 && tmp_weight_[2 * v + 1] == 0) vars.push_back(v);
    ++tmp_weight_[l];
  }
  cancel_until(0);
  if (propagate()) ok_ = false;
  // a literal and its negation: w_l * l + w_n * -l = min + |w_l - w_n| * (the heavier one)
  int64_t b = bound;
  int64_t total = 0;
  bool y_inside = false;
  std::vector<WLit> wl;
  wl.reserve(vars.size());
  for (Var v : vars) {
    const int32_t wp = tmp_weight_[2 * v], wn = tmp_weight_[2 * v + 1];
    tmp_weight_[2 * v] = tmp_weight_[2 * v + 1] = 0;
    const Lit l = make_lit(v, wn > wp);
    const int32_t w = wp > wn ? wp - wn : wn - wp;
    b -= std::min(wp, wn);
    if (w == 0) continue;
    if (vals_[l] > 0) {  // fixed at level 0
      b -= w;
      continue;
    }
    if (vals_[l] < 0) continue;
    if (v == lit_var(y)) y_inside = true;
    wl.push_back({l, w});
    total += w;
  }
  if (!ok_) return false;
  if (y_inside) {  // y occurs in its own sum: an equivalent fresh target
    const Var a = new_var();
    const Lit ya = make_lit(a, false);
    std::vector<Lit> c1{lit_not(y), ya}, c2{y, lit_not(ya)};
    add_clause_lits(c1);
    add_clause_lits(c2);
    y = ya;
    if (!ok_ || propagate()) {
      ok_ = false;
      return false;
    }
  }
  if (b <= 0 || b > total) {
    std::vector<Lit> unit{b <= 0 ? y : lit_not(y)};
    return add_clause_lits(unit);
  }
  if (total > (int64_t{1} << 28)) throw std::length_error("cardsat: cardinality weights too large");
  std::stable_sort(wl.begin(), wl.end(), [](const WLit& a, const WLit& c) { return a.w > c.w; });
  const uint32_t ci = static_cast<uint32_t>(cards_.size());
  Card c{};
  c.t = 0;
  c.f = 0;
  c.slack_base = static_cast<int32_t>(total - b);
  c.bm1 = static_cast<int32_t>(b - 1);
  c.max_w = wl.front().w;
  c.y = y;
  c.ystate = 0;
  c.begin = static_cast<uint32_t>(card_lits_.size());
  c.size = static_cast<uint32_t>(wl.size());
  cards_.push_back(c);
  card_lits_.insert(card_lits_.end(), wl.begin(), wl.end());
  for (const WLit& x : wl) {
    card_occ_[x.lit].push_back({ci, (x.w << 2) | kOccTrue});
    card_occ_[lit_not(x.lit)].push_back({ci, (x.w << 2) | kOccFalse});
  }
  card_occ_[y].push_back({ci, kOccYTrue});
  card_occ_[lit_not(y)].push_back({ci, kOccYFalse});
  if (vals_[y] != 0) {  // y fixed at level 0 (and already processed): its event now
    Card& cc = cards_[ci];
    const int32_t k = static_cast<int32_t>(trail_.size()) - 1;
    if (vals_[y] > 0) {
      cc.ystate = 1;
      if (cc.slack_base < cc.max_w) scan_true(ci, cc.slack_base, k);
    } else {
      cc.ystate = -1;
      if (cc.bm1 < cc.max_w) scan_false(ci, cc.bm1, k);
    }
    if (propagate()) ok_ = false;
  }
  return ok_;
}

void Solver::purge_watches() {
  for (auto& ws : watches_) {
    size_t j = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      if (!(cflags(ws[i].cref & ~kBinary) & kDeleted)) ws[j++] = ws[i];
    }
    ws.resize(j);
  }
}

void Solver::collect_garbage() {
  std::vector<uint32_t> fresh;
  fresh.reserve(arena_.size() - wasted_ + 16);
  auto move = [&](uint32_t& cr) {
    const uint32_t n = csize(cr);
    const uint32_t ncr = static_cast<uint32_t>(fresh.size());
    fresh.insert(fresh.end(), arena_.begin() + cr, arena_.begin() + cr + kHeader + n);
    cflags(cr) |= kRelocated;
    arena_[cr + 2] = ncr;
    cr = ncr;
  };
  for (uint32_t& cr : clauses_) move(cr);
  for (uint32_t& cr : learnts_) move(cr);
  for (Lit p : trail_) {
    VarInfo& vi = vinfo_[lit_var(p)];
    if (vi.reason == kNoReason || (vi.reason & kCardReason)) continue;
    if (cflags(vi.reason) & kRelocated) {
      vi.reason = arena_[vi.reason + 2];
    } else {
      vi.reason = kNoReason;  // a deleted reason: only at level 0
    }
  }
  arena_.swap(fresh);
  wasted_ = 0;
  for (auto& ws : watches_) ws.clear();
  for (uint32_t cr : clauses_) attach(cr);
  for (uint32_t cr : learnts_) attach(cr);
}

void Solver::simplify() {
  simp_trail_ = static_cast<uint32_t>(trail_.size());
  bool removed = false;
  auto sweep = [&](std::vector<uint32_t>& list) {
    size_t j = 0;
    for (uint32_t cr : list) {
      const Lit* c = clits(cr);
      const uint32_t n = csize(cr);
      bool sat = false;
      for (uint32_t i = 0; i < n && !sat; ++i) sat = vals_[c[i]] > 0;
      if (!sat) {
        list[j++] = cr;
        continue;
      }
      for (int i = 0; i < 2; ++i) {
        if (reason(lit_var(c[i])) == cr) vinfo_[lit_var(c[i])].reason = kNoReason;
      }
      cflags(cr) |= kDeleted;
      wasted_ += kHeader + n;
      removed = true;
    }
    list.resize(j);
  };
  sweep(clauses_);
  sweep(learnts_);
  if (!removed) return;
  if (wasted_ * 4 > arena_.size()) {
    collect_garbage();
  } else {
    purge_watches();
  }
}

void Solver::reduce_db() {
  ++reductions_;
  ++stats_.reductions;
  next_reduce_ = stats_.conflicts + static_cast<uint64_t>(opts_.reduce_first) +
                 static_cast<uint64_t>(opts_.reduce_inc) * reductions_;
  std::vector<uint32_t> cand;
  for (uint32_t cr : learnts_) {
    uint32_t& fl = cflags(cr);
    const uint32_t tier = (fl & kTierMask) >> kTierShift;
    if (tier == 1) {
      if (!(fl & kUsed)) fl = (fl & ~kTierMask) | (2u << kTierShift);
      fl &= ~kUsed;
    } else if (tier == 2) {
      if (fl & kUsed) {
        fl &= ~kUsed;
      } else if (!locked(cr)) {
        cand.push_back(cr);
      }
    }
  }
  std::sort(cand.begin(), cand.end(), [this](uint32_t a, uint32_t c) {
    const uint32_t la = clbd(a), lc = clbd(c);
    if (la != lc) return la > lc;
    return cactivity(a) < cactivity(c);
  });
  const size_t ndel = cand.size() / 2;
  if (ndel == 0) return;
  for (size_t i = 0; i < ndel; ++i) {
    cflags(cand[i]) |= kDeleted;
    wasted_ += kHeader + csize(cand[i]);
  }
  stats_.deleted += ndel;
  size_t j = 0;
  for (uint32_t cr : learnts_) {
    if (!(cflags(cr) & kDeleted)) learnts_[j++] = cr;
  }
  learnts_.resize(j);
  if (wasted_ * 4 > arena_.size()) {
    collect_garbage();
  } else {
    purge_watches();
  }
}

// ---------------------------------------------------------------- propagation

bool Solver::propagate() {
  for (;;) {
    while (qhead_ < trail_.size()) {
      if (propagate_clauses(trail_[qhead_++])) return true;
    }
    if (card_head_ < trail_.size()) {
      const uint32_t k = card_head_++;
      if (propagate_cards(trail_[k], static_cast<int32_t>(k))) return true;
    } else {
      return false;
    }
  }
}

bool Solver::propagate_clauses(Lit p) {
  ++stats_.propagations;
  const Lit false_lit = lit_not(p);
  std::vector<Watcher>& ws = watches_[false_lit];
  if (ws.empty()) return false;
  Watcher* i = ws.data();
  Watcher* j = i;
  Watcher* const end = i + ws.size();
  bool conflict = false;
  while (i != end) {
    const Lit blocker = i->blocker;
    const int8_t bv = vals_[blocker];
    if (bv > 0) {
      *j++ = *i++;
      continue;
    }
    const uint32_t cr = i->cref;
    if (cr & kBinary) {
      *j++ = *i++;
      if (bv == 0) {
        enqueue(blocker, cr & ~kBinary, -1);
      } else {
        confl_cref_ = cr & ~kBinary;
        conflict = true;
        break;
      }
      continue;
    }
    Lit* c = clits(cr);
    if (c[0] == false_lit) {
      c[0] = c[1];
      c[1] = false_lit;
    }
    ++i;
    const Lit first = c[0];
    const Watcher w{cr, first};
    if (first != blocker && vals_[first] > 0) {
      *j++ = w;
      continue;
    }
    const uint32_t n = csize(cr);
    bool moved = false;
    for (uint32_t k = 2; k < n; ++k) {
      if (vals_[c[k]] >= 0) {
        c[1] = c[k];
        c[k] = false_lit;
        watches_[c[1]].push_back(w);
        moved = true;
        break;
      }
    }
    if (moved) continue;
    *j++ = w;
    if (vals_[first] < 0) {
      confl_cref_ = cr;
      conflict = true;
      break;
    }
    enqueue(first, cr, -1);
  }
  if (conflict) {
    while (i != end) *j++ = *i++;
  }
  ws.resize(static_cast<size_t>(j - ws.data()));
  return conflict;
}

void Solver::scan_true(uint32_t ci, int32_t slack, int32_t k) {
  const Card& c = cards_[ci];
  const WLit* x = card_lits_.data() + c.begin;
  const WLit* const end = x + c.size;
  for (; x != end && x->w > slack; ++x) {
    if (vals_[x->lit] == 0) {
      enqueue(x->lit, kCardReason | ci, k);
      ++stats_.card_propagations;
    }
  }
}

void Solver::scan_false(uint32_t ci, int32_t slack, int32_t k) {
  const Card& c = cards_[ci];
  const WLit* x = card_lits_.data() + c.begin;
  const WLit* const end = x + c.size;
  for (; x != end && x->w > slack; ++x) {
    if (vals_[x->lit] == 0) {
      enqueue(lit_not(x->lit), kCardReason | ci, k);
      ++stats_.card_propagations;
    }
  }
}

void Solver::card_conflict(uint32_t ci, bool y_true_needed, int32_t k) {
  ++stats_.card_conflicts;
  confl_cref_ = kNoReason;
  confl_lits_.clear();
  const Card& c = cards_[ci];
  if (y_true_needed) {  // y is false, yet the processed true literals reach b
    confl_lits_.push_back(c.y);
    collect_processed(c, true, c.bm1 + 1, k, confl_lits_);
  } else {  // y is true, yet the processed false literals leave fewer than b
    confl_lits_.push_back(lit_not(c.y));
    collect_processed(c, false, c.slack_base + 1, k, confl_lits_);
  }
}

void Solver::collect_processed(const Card& c, bool want_true, int32_t need, int32_t k,
                               std::vector<Lit>& out) {
  // Append the negations of processed (trail position <= k) literals of c whose value is
  // want_true, until their weight reaches need; literals fixed at level 0 count but are left
  // out (they are false in every clause forever).
  const size_t old = out.size();
  if (out.capacity() < old + c.size) out.reserve(2 * (old + c.size));
  out.resize(old + c.size);
  Lit* w = out.data() + old;
  const WLit* x = card_lits_.data() + c.begin;
  const WLit* const end = x + c.size;
  const int8_t want = want_true ? 1 : -1;
  const Lit flip = want_true ? 1u : 0u;
  int32_t got = 0;
  for (; x != end && got < need; ++x) {
    if (vals_[x->lit] != want) continue;
    const VarInfo& li = vinfo_[lit_var(x->lit)];
    if (li.pos > k) continue;
    got += x->w;
    if (li.level > 0) *w++ = x->lit ^ flip;
  }
  out.resize(static_cast<size_t>(w - out.data()));
}

bool Solver::propagate_cards(Lit p, int32_t k) {
  const std::vector<CardOcc>& occ = card_occ_[p];
  const CardOcc* o = occ.data();
  const CardOcc* const end = o + occ.size();
  Card* const cards = cards_.data();
  const int8_t* const vals = vals_.data();
  for (; o != end; ++o) {  // counters first; propagation only where a threshold is crossed
    const uint32_t ci = o->card;
    Card& c = cards[ci];
    const int32_t w = o->data >> 2;
    switch (o->data & 3) {
      case kOccTrue: {
        c.t += w;
        if (c.t > c.bm1) {  // at least b true: y
          const int8_t vy = vals[c.y];
          if (vy == 0) {
            enqueue(c.y, kCardReason | ci, k);
            ++stats_.card_propagations;
          } else if (vy < 0) {
            card_conflict(ci, true, k);
            goto conflict;
          }
        } else if (c.ystate < 0 && c.bm1 - c.t < c.max_w) {
          scan_false(ci, c.bm1 - c.t, k);
        }
        break;
      }
      case kOccFalse: {
        c.f += w;
        const int32_t slack = c.slack_base - c.f;
        if (slack < 0) {  // fewer than b can be true: -y
          const int8_t vy = vals[c.y];
          if (vy == 0) {
            enqueue(lit_not(c.y), kCardReason | ci, k);
            ++stats_.card_propagations;
          } else if (vy > 0) {
            card_conflict(ci, false, k);
            goto conflict;
          }
        } else if (c.ystate > 0 && slack < c.max_w) {
          scan_true(ci, slack, k);
        }
        break;
      }
      case kOccYTrue: {
        c.ystate = 1;
        const int32_t slack = c.slack_base - c.f;
        if (slack < 0) {
          card_conflict(ci, false, k);
          goto conflict;
        }
        if (slack < c.max_w) scan_true(ci, slack, k);
        break;
      }
      default: {  // kOccYFalse
        c.ystate = -1;
        const int32_t slack = c.bm1 - c.t;
        if (slack < 0) {
          card_conflict(ci, true, k);
          goto conflict;
        }
        if (slack < c.max_w) scan_false(ci, slack, k);
        break;
      }
    }
  }
  return false;
conflict:
  // the remaining counters still take p, so that backtracking can undo all of them
  for (++o; o != end; ++o) {
    Card& c = cards[o->card];
    switch (o->data & 3) {
      case kOccTrue:
        c.t += o->data >> 2;
        break;
      case kOccFalse:
        c.f += o->data >> 2;
        break;
      case kOccYTrue:
        c.ystate = 1;
        break;
      default:
        c.ystate = -1;
    }
  }
  return true;
}

void Solver::cancel_until(int lvl) {
  if (decision_level() <= lvl) return;
  const uint32_t lim = trail_lim_[static_cast<size_t>(lvl)];
  for (uint32_t i = card_head_; i > lim; --i) {
    for (const CardOcc& o : card_occ_[trail_[i - 1]]) {
      Card& c = cards_[o.card];
      switch (o.data & 3) {
        case kOccTrue:
          c.t -= o.data >> 2;
          break;
        case kOccFalse:
          c.f -= o.data >> 2;
          break;
        default:
          c.ystate = 0;
      }
    }
  }
  if (card_head_ > lim) card_head_ = lim;
  for (uint32_t i = static_cast<uint32_t>(trail_.size()); i > lim; --i) {
    const Lit p = trail_[i - 1];
    const Var v = lit_var(p);
    vals_[p] = 0;
    vals_[lit_not(p)] = 0;
    phase_[v] = lit_negated(p) ? 1 : 0;
    expl_stamp_[v] = 0;
    if (heap_idx_[v] < 0) heap_insert(v);
  }
  trail_.resize(lim);
  trail_lim_.resize(static_cast<size_t>(lvl));
  qhead_ = lim;
}

// ---------------------------------------------------------------- analysis

void Solver::explain_card(Var v, std::vector<Lit>& out) {
  const VarInfo& vi = vinfo_[v];
  const uint32_t ci = vi.reason & ~kCardReason;
  const Lit p = vals_[make_lit(v, false)] > 0 ? make_lit(v, false) : make_lit(v, true);
  const Card& c = cards_[ci];
  out.push_back(p);
  if (lit_var(c.y) == v) {
    if (p == c.y) {  // at least b processed true literals
      collect_processed(c, true, c.bm1 + 1, vi.rpos, out);
    } else {  // more than W - b processed false literals
      collect_processed(c, false, c.slack_base + 1, vi.rpos, out);
    }
    return;
  }
  // an operand forced by y; its weight is at least the smallest one
  const int32_t min_w = card_lits_[c.begin + c.size - 1].w;
  if (vals_[c.y] > 0) {  // y true: false weight F with W - F - w < b
    out.push_back(lit_not(c.y));
    collect_processed(c, false, c.slack_base - min_w + 1, vi.rpos, out);
  } else {  // y false: true weight T with T + w >= b
    out.push_back(c.y);
    collect_processed(c, true, c.bm1 + 1 - min_w, vi.rpos, out);
  }
}

void Solver::reset_explanations_if_large() {
  // cached explanations are dropped when their var is unassigned; the arena is emptied (and
  // every cache entry invalidated) when it has grown large
  if (expl_arena_.size() < (size_t{1} << 20) + 8 * vinfo_.size()) return;
  ++expl_epoch_;
  expl_arena_.clear();
}

std::pair<const Lit*, uint32_t> Solver::reason_lits(Var v) {
  const uint32_t r = reason(v);
  if (!(r & kCardReason)) return {clits(r), csize(r)};
  if (expl_stamp_[v] != expl_epoch_) {  // explanations stay valid while v is assigned
    expl_stamp_[v] = expl_epoch_;
    expl_begin_[v] = static_cast<uint32_t>(expl_arena_.size());
    explain_card(v, expl_arena_);
    expl_size_[v] = static_cast<uint32_t>(expl_arena_.size()) - expl_begin_[v];
    ++stats_.card_explanations;
  }
  return {expl_arena_.data() + expl_begin_[v], expl_size_[v]};
}

uint32_t Solver::compute_lbd(const Lit* lits, uint32_t n) {
  ++lbd_counter_;
  uint32_t lbd = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const int lv = level(lit_var(lits[i]));
    if (level_stamp_[static_cast<size_t>(lv)] != lbd_counter_) {
      level_stamp_[static_cast<size_t>(lv)] = lbd_counter_;
      ++lbd;
    }
  }
  return lbd;
}

bool Solver::lit_redundant(Lit p, uint32_t abstract_levels) {
  analyze_stack_.clear();
  analyze_stack_.push_back(p);
  const size_t top = analyze_toclear_.size();
  const size_t base_top = analysis_base_.size();
  const bool temp_before = analysis_temp_;
  while (!analyze_stack_.empty()) {
    const Var v = lit_var(analyze_stack_.back());
    analyze_stack_.pop_back();
    const uint32_t rv = reason(v);
    if (!(rv & kCardReason) && (cflags(rv) & kTemp)) analysis_temp_ = true;
    const auto r = reason_lits(v);
    for (uint32_t i = 0; i < r.second; ++i) {
      const Lit q = r.first[i];
      const Var u = lit_var(q);
      if (u == v || seen_[u]) continue;
      if (level(u) <= base_level_) {
        if (level(u) > 0) note_base(q);
        continue;
      }
      if (reason(u) != kNoReason && (abstract_level(u) & abstract_levels) != 0) {
        seen_[u] = 1;
        analyze_stack_.push_back(q);
        analyze_toclear_.push_back(q);
      } else {
        for (size_t j = top; j < analyze_toclear_.size(); ++j) seen_[lit_var(analyze_toclear_[j])] = 0;
        analyze_toclear_.resize(top);
        for (size_t j = base_top; j < analysis_base_.size(); ++j) {
          base_seen_[lit_var(analysis_base_[j])] = 0;
        }
        analysis_base_.resize(base_top);
        analysis_temp_ = temp_before;
        return false;
      }
    }
  }
  return true;
}

void Solver::note_base(Lit q) {
  // A base-level literal is a premise of the clause being learned, not resolved away: the
  // clause with q added holds whatever the assumptions (q is false, so it is -b for a true b).
  const Var v = lit_var(q);
  if (base_seen_[v]) return;
  base_seen_[v] = 1;
  analysis_base_.push_back(q);
}

void Solver::clear_base() {
  for (Lit q : analysis_base_) base_seen_[lit_var(q)] = 0;
  analysis_base_.clear();
}

void Solver::analyze(std::vector<Lit>& out, int& bt_level, uint32_t& lbd) {
  reset_explanations_if_large();
  analysis_temp_ = false;
  clear_base();
  out.clear();
  out.push_back(kLitUndef);
  int path = 0;
  Lit p = kLitUndef;
  int32_t idx = static_cast<int32_t>(trail_.size()) - 1;
  const int dl = decision_level();
  const Lit* cl;
  uint32_t n;
  if (confl_cref_ != kNoReason) {
    if (cflags(confl_cref_) & kLearnt) bump_clause(confl_cref_);
    if (cflags(confl_cref_) & kTemp) analysis_temp_ = true;
    cl = clits(confl_cref_);
    n = csize(confl_cref_);
  } else {
    cl = confl_lits_.data();
    n = static_cast<uint32_t>(confl_lits_.size());
  }
  for (;;) {
    for (uint32_t i = 0; i < n; ++i) {
      const Lit q = cl[i];
      const Var v = lit_var(q);
      if (p != kLitUndef && v == lit_var(p)) continue;
      if (seen_[v]) continue;
      if (level(v) <= base_level_) {
        if (level(v) > 0) note_base(q);
        continue;
      }
      seen_[v] = 1;
      bump_var(v);
      if (level(v) >= dl) {
        ++path;
      } else {
        out.push_back(q);
      }
    }
    while (!seen_[lit_var(trail_[static_cast<size_t>(idx)])]) --idx;
    p = trail_[static_cast<size_t>(idx)];
    --idx;
    const Var pv = lit_var(p);
    seen_[pv] = 0;
    if (--path <= 0) break;
    const uint32_t r = reason(pv);
    if (!(r & kCardReason) && (cflags(r) & kTemp)) analysis_temp_ = true;
    if (!(r & kCardReason) && (cflags(r) & kLearnt)) {
      bump_clause(r);
      uint32_t& fl = cflags(r);
      fl |= kUsed;
      if (((fl & kTierMask) >> kTierShift) != 0) {
        const uint32_t nl = compute_lbd(clits(r), csize(r));
        if (nl < clbd(r)) set_lbd_tier(r, nl);
      }
    }
    const auto rl = reason_lits(pv);
    cl = rl.first;
    n = rl.second;
  }
  out[0] = lit_not(p);

  // recursive minimization
  analyze_toclear_.assign(out.begin(), out.end());
  uint32_t abstract_levels = 0;
  for (size_t i = 1; i < out.size(); ++i) abstract_levels |= abstract_level(lit_var(out[i]));
  size_t j = 1;
  for (size_t i = 1; i < out.size(); ++i) {
    const Var v = lit_var(out[i]);
    if (reason(v) == kNoReason || !lit_redundant(out[i], abstract_levels)) out[j++] = out[i];
  }
  stats_.minimized_literals += out.size() - j;
  out.resize(j);

  if (out.size() == 1) {
    bt_level = base_level_;
  } else {
    size_t max_i = 1;
    for (size_t i = 2; i < out.size(); ++i) {
      if (level(lit_var(out[i])) > level(lit_var(out[max_i]))) max_i = i;
    }
    std::swap(out[1], out[max_i]);
    bt_level = level(lit_var(out[1]));
  }
  // With few base-level premises the clause is kept with them (valid for every later solve);
  // otherwise it is temporary. Below the asserting pair, false since the base level.
  if (!analysis_base_.empty()) {
    if (!analysis_temp_ &&
        analysis_base_.size() <= static_cast<size_t>(std::max(opts_.keep_base_max, 0))) {
      out.insert(out.end(), analysis_base_.begin(), analysis_base_.end());
      ++stats_.kept_with_base;
    } else {
      analysis_temp_ = true;
    }
  }
  clear_base();
  lbd = compute_lbd(out.data(), static_cast<uint32_t>(out.size()));
  for (Lit l : analyze_toclear_) seen_[lit_var(l)] = 0;
}

void Solver::analyze_final(Lit p) {
  // p is true and contradicts the assumption -p
  core_.clear();
  core_.push_back(to_dimacs(lit_not(p)));
  if (level(lit_var(p)) == 0) return;
  reset_explanations_if_large();
  seen_[lit_var(p)] = 1;
  for (int32_t i = static_cast<int32_t>(trail_.size()) - 1;
       i >= static_cast<int32_t>(trail_lim_[0]); --i) {
    const Var v = lit_var(trail_[static_cast<size_t>(i)]);
    if (!seen_[v]) continue;
    if (reason(v) == kNoReason) {
      core_.push_back(to_dimacs(trail_[static_cast<size_t>(i)]));
    } else {
      const auto r = reason_lits(v);
      for (uint32_t q = 0; q < r.second; ++q) {
        const Var u = lit_var(r.first[q]);
        if (u != v && level(u) > 0) seen_[u] = 1;
      }
    }
    seen_[v] = 0;
  }
  seen_[lit_var(p)] = 0;
}

void Solver::analyze_final_conflict() {
  // The conflict holds at the base level: the assumptions (with the formula) are unsat. The
  // assumptions it depends on are found by walking back the reasons; where a temporary clause
  // or unit hides some of them, all assumptions are the (inexact) answer.
  core_.clear();
  reset_explanations_if_large();
  bool exact = true;
  const Lit* cl;
  uint32_t n;
  if (confl_cref_ != kNoReason) {
    if (cflags(confl_cref_) & kTemp) exact = false;
    cl = clits(confl_cref_);
    n = csize(confl_cref_);
  } else {
    cl = confl_lits_.data();
    n = static_cast<uint32_t>(confl_lits_.size());
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (level(lit_var(cl[i])) > 0) seen_[lit_var(cl[i])] = 1;
  }
  for (int32_t i = static_cast<int32_t>(trail_.size()) - 1;
       i >= static_cast<int32_t>(trail_lim_[0]); --i) {
    const Lit t = trail_[static_cast<size_t>(i)];
    const Var v = lit_var(t);
    if (!seen_[v]) continue;
    seen_[v] = 0;
    const uint32_t r = reason(v);
    if (r == kNoReason) {
      if (assumed_[v] == 1) {
        core_.push_back(to_dimacs(t));
      } else if (assumed_[v] != 2) {  // 2: a unit that holds without the assumptions
        exact = false;
      }
      continue;
    }
    if (!(r & kCardReason) && (cflags(r) & kTemp)) exact = false;
    const auto rl = reason_lits(v);
    for (uint32_t q = 0; q < rl.second; ++q) {
      const Var u = lit_var(rl.first[q]);
      if (u != v && level(u) > 0) seen_[u] = 1;
    }
  }
  if (!exact) {
    core_.clear();
    for (Lit a : assumptions_) core_.push_back(to_dimacs(a));
  }
}

void Solver::drop_temporary_clauses() {
  // at level 0, after a base-mode solve: no temporary clause is a reason there
  made_temp_ = false;
  size_t j = 0;
  bool removed = false;
  for (uint32_t cr : learnts_) {
    if (cflags(cr) & kTemp) {
      cflags(cr) |= kDeleted;
      wasted_ += kHeader + csize(cr);
      removed = true;
    } else {
      learnts_[j++] = cr;
    }
  }
  learnts_.resize(j);
  if (!removed) return;
  if (wasted_ * 4 > arena_.size()) {
    collect_garbage();
  } else {
    purge_watches();
  }
}

// ---------------------------------------------------------------- search

bool Solver::budget_exhausted() {
  if (stop_) return true;
  if (interrupt_.load(std::memory_order_relaxed) ||
      (conflict_budget_ >= 0 && static_cast<int64_t>(stats_.conflicts) >= conflict_budget_) ||
      (has_deadline_ && (++limit_ticks_ & 63u) == 0 &&
       std::chrono::steady_clock::now() >= deadline_)) {
    stop_ = true;
  }
  return stop_;
}

bool Solver::should_restart() {
  const uint64_t since = stats_.conflicts - conflicts_at_restart_;
  if (opts_.restart_mode == 1) {
    return static_cast<double>(since) >= luby(2.0, luby_index_) * opts_.luby_unit;
  }
  return since >= static_cast<uint64_t>(opts_.restart_min) &&
         ema_fast_ > opts_.restart_margin * ema_slow_;
}

double Solver::drand() {  // MiniSat's generator (Park-Miller in doubles)
  rnd_state_ *= 1389796;
  const int q = static_cast<int>(rnd_state_ / 2147483647);
  rnd_state_ -= static_cast<double>(q) * 2147483647;
  return rnd_state_ / 2147483647;
}

Lit Solver::pick_branch() {
  if (rnd_state_ == 0.0) {
    rnd_state_ = opts_.random_seed;
    if (!(rnd_state_ > 0.0 && rnd_state_ < 2147483647.0)) rnd_state_ = 91648253.0;
  }
  Var next = static_cast<Var>(-1);
  if (opts_.random_var_freq > 0.0 && !heap_.empty() && drand() < opts_.random_var_freq) {
    const Var v = heap_[static_cast<size_t>(drand() * static_cast<double>(heap_.size()))];
    if (vals_[make_lit(v, false)] == 0 && !(prio_active_ && prio_[v] < prio_[heap_[0]])) next = v;
  }
  while (next == static_cast<Var>(-1)) {
    if (heap_.empty()) return kLitUndef;
    const Var v = heap_pop();
    if (vals_[make_lit(v, false)] == 0) next = v;
  }
  bool neg;
  if (opts_.random_polarity) {
    neg = drand() < 0.5;
  } else if (opts_.phase_saving) {
    neg = phase_[next] != 0;
  } else {
    neg = fixed_phase_[next] != 0;
  }
  return make_lit(next, neg);
}

Status Solver::search() {
  for (;;) {
    if (propagate()) {
      ++stats_.conflicts;
      if (decision_level() <= base_level_) {
        if (decision_level() == 0) {
          ok_ = false;
        } else {
          analyze_final_conflict();
        }
        return Status::Unsat;
      }
      int bt = 0;
      uint32_t lbd = 0;
      analyze(learnt_, bt, lbd);
      cancel_until(bt);
      if (learnt_.size() == 1) {
        // On the base level (a base-mode solve), never below it: clauses learned from the
        // assumptions must not propagate where the assumptions do not hold. A unit that does
        // not depend on them becomes a level-0 unit when the solve returns.
        enqueue(learnt_[0], kNoReason, -1);
        if (base_level_ > 0 && !analysis_temp_) {
          pending_units_.push_back(learnt_[0]);
          assumed_[lit_var(learnt_[0])] = 2;
        }
      } else {
        const uint32_t cr =
            alloc_clause(learnt_.data(), static_cast<uint32_t>(learnt_.size()), true);
        set_lbd_tier(cr, lbd);
        if (analysis_temp_) cflags(cr) |= kTemp;
        learnts_.push_back(cr);
        attach(cr);
        bump_clause(cr);
        enqueue(learnt_[0], cr, -1);
      }
      if (analysis_temp_) {
        made_temp_ = true;
        ++stats_.temporary_learned;
      }
      ++stats_.learned;
      stats_.learned_literals += learnt_.size();
      var_inc_ /= opts_.var_decay;
      cla_inc_ /= opts_.clause_decay;
      ++ema_count_;
      const double x = static_cast<double>(lbd);
      const double cnt = static_cast<double>(ema_count_);
      ema_fast_ += (x - ema_fast_) * std::max(1.0 / 32.0, 1.0 / cnt);
      ema_slow_ += (x - ema_slow_) * std::max(1.0 / 4096.0, 1.0 / cnt);
      if (budget_exhausted()) return Status::Unknown;
    } else {
      if (prio_switch_due()) {  // next epoch: priority first <-> plain VSIDS
        ++prio_epoch_;
        prio_epoch_end_ = stats_.conflicts + (static_cast<uint64_t>(opts_.priority_epoch)
                                              << (prio_epoch_ / 2));
        conflicts_at_restart_ = stats_.conflicts;
        ++stats_.restarts;
        cancel_until(base_level_);
        set_prio_active(prio_epoch_ % 2 == 0);
        return Status::Unknown;
      }
      if (should_restart()) {
        conflicts_at_restart_ = stats_.conflicts;
        ++luby_index_;
        ++stats_.restarts;
        cancel_until(base_level_);
        return Status::Unknown;
      }
      if (budget_exhausted()) return Status::Unknown;
      if (decision_level() == 0 && trail_.size() != simp_trail_) simplify();
      if (stats_.conflicts >= next_reduce_) reduce_db();
      if (base_level_ > 0 && decision_level() == 0) {  // every assumption on level 1
        trail_lim_.push_back(static_cast<uint32_t>(trail_.size()));
        for (Lit a : assumptions_) {
          if (vals_[a] > 0) continue;
          if (vals_[a] < 0) {  // fixed at level 0, or its negation is assumed too
            core_.clear();
            core_.push_back(to_dimacs(a));
            if (level(lit_var(a)) > 0) core_.push_back(to_dimacs(lit_not(a)));
            return Status::Unsat;
          }
          enqueue(a, kNoReason, -1);
        }
        continue;
      }
      Lit next = kLitUndef;
      while (base_level_ == 0 && decision_level() < static_cast<int>(assumptions_.size())) {
        const Lit a = assumptions_[static_cast<size_t>(decision_level())];
        if (vals_[a] > 0) {
          trail_lim_.push_back(static_cast<uint32_t>(trail_.size()));  // an empty level
        } else if (vals_[a] < 0) {
          analyze_final(lit_not(a));
          return Status::Unsat;
        } else {
          next = a;
          break;
        }
      }
      if (next == kLitUndef) {
        next = pick_branch();
        if (next == kLitUndef) return Status::Sat;
        ++stats_.decisions;
      }
      trail_lim_.push_back(static_cast<uint32_t>(trail_.size()));
      enqueue(next, kNoReason, -1);
    }
  }
}

void Solver::reset_heuristics(int what) {
  if (what & 1) std::copy(phase0_.begin(), phase0_.end(), phase_.begin());
  if (what & 2) {
    std::fill(activity_.begin(), activity_.end(), 0.0);
    var_inc_ = 1.0;
    heap_rebuild();
  }
  if (what & 4) {
    ema_fast_ = ema_slow_ = 0.0;
    ema_count_ = 0;
  }
}

Status Solver::solve(const std::vector<int>& assumptions, int64_t conflict_limit,
                     double time_limit_s) {
  const auto t0 = std::chrono::steady_clock::now();
  ++stats_.solves;
  model_.clear();
  core_.clear();
  stop_ = false;
  interrupt_.store(false, std::memory_order_relaxed);
  assumptions_.clear();
  for (int a : assumptions) assumptions_.push_back(to_lit(a));
  base_level_ = (opts_.assumption_mode == 1 && !assumptions_.empty()) ? 1 : 0;
  if (base_level_ > 0) {
    for (Lit a : assumptions_) assumed_[lit_var(a)] = 1;
  }
  Status st = Status::Unsat;
  if (ok_) {
    cancel_until(0);
    conflict_budget_ =
        conflict_limit >= 0 ? static_cast<int64_t>(stats_.conflicts) + conflict_limit : -1;
    has_deadline_ = time_limit_s >= 0.0;
    if (has_deadline_) {
      deadline_ = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(time_limit_s));
    }
    if (next_reduce_ == 0) next_reduce_ = stats_.conflicts + opts_.reduce_first;
    conflicts_at_restart_ = stats_.conflicts;
    if (stats_.solves == 1) {
      phase0_ = phase_;
    } else {
      reset_heuristics(opts_.reset_between);
    }
    // a first solve has nothing carried over to fall back from
    const uint64_t reset_at = opts_.reset_after > 0 && stats_.solves > 1
                                  ? stats_.conflicts + static_cast<uint64_t>(opts_.reset_after)
                                  : UINT64_MAX;
    bool was_reset = false;
    if (has_prio_) {  // each solve starts with a priority epoch
      prio_epoch_ = 0;
      prio_epoch_end_ = stats_.conflicts + static_cast<uint64_t>(opts_.priority_epoch);
      set_prio_active(true);
    }
    trail_.reserve(vinfo_.size());
    for (;;) {
      st = search();
      if (st != Status::Unknown || stop_) break;
      if (!was_reset && stats_.conflicts >= reset_at) {
        reset_heuristics(7);
        was_reset = true;
        ++stats_.heuristic_resets;
      }
    }
    if (st == Status::Sat) {
      model_.resize(user2int_.size());
      for (size_t i = 0; i < user2int_.size(); ++i) {
        const int u = static_cast<int>(i) + 1;
        model_[i] = vals_[make_lit(user2int_[i], false)] > 0 ? u : -u;
      }
    }
    cancel_until(0);
    if (made_temp_) drop_temporary_clauses();
    for (Lit u : pending_units_) {
      if (vals_[u] == 0) {
        enqueue(u, kNoReason, -1);
      } else if (vals_[u] < 0) {
        ok_ = false;
      }
    }
  }
  for (Lit a : assumptions_) assumed_[lit_var(a)] = 0;
  for (Lit u : pending_units_) assumed_[lit_var(u)] = 0;
  pending_units_.clear();
  base_level_ = 0;
  stats_.time_s +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

}  // namespace cardsat
