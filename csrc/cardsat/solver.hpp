// cardsat: a CDCL SAT solver with native reified cardinality constraints.
//
//   y <-> sum_i w_i * l_i >= b      (w_i >= 1: a literal repeated w_i times)
//
// Clauses use two watched literals with blockers; cardinality constraints keep counters of the
// (weighted) true and false literals that propagation has processed, and propagate in both
// directions (target-inferring: the counts decide y; operand-inferring: y decides the remaining
// literals). Their reasons are built lazily, only when conflict analysis asks, from the literals
// processed before the propagation (stored as a trail position).
//
// Literals inside the solver: 2 * var + negated, vars 0-based. The API takes DIMACS literals.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cardsat {

using Lit = uint32_t;
using Var = uint32_t;

constexpr Lit kLitUndef = 0xFFFFFFFFu;
constexpr uint32_t kNoReason = 0xFFFFFFFFu;
constexpr uint32_t kCardReason = 0x80000000u;  // reason = kCardReason | card index
constexpr uint32_t kBinary = 0x80000000u;      // watcher cref flag: binary clause

inline Lit make_lit(Var v, bool negated) { return (v << 1) | static_cast<Lit>(negated); }
inline Var lit_var(Lit l) { return l >> 1; }
inline bool lit_negated(Lit l) { return (l & 1u) != 0; }
inline Lit lit_not(Lit l) { return l ^ 1u; }

enum class Status : int { Unknown = 0, Sat = 10, Unsat = 20 };

struct Stats {
  uint64_t conflicts = 0;
  uint64_t decisions = 0;
  uint64_t propagations = 0;  // literals processed by propagation
  uint64_t card_propagations = 0;
  uint64_t card_conflicts = 0;
  uint64_t card_explanations = 0;
  uint64_t restarts = 0;
  uint64_t learned = 0;
  uint64_t learned_literals = 0;
  uint64_t minimized_literals = 0;
  uint64_t temporary_learned = 0;  // learned under assumptions (base mode), deleted after
  uint64_t kept_with_base = 0;     // learned under assumptions, kept with base-level literals
  uint64_t heuristic_resets = 0;   // reset_after fallbacks to the first solve's heuristics
  uint64_t reductions = 0;
  uint64_t deleted = 0;
  uint64_t solves = 0;
  double time_s = 0.0;
};

struct Options {
  double var_decay = 0.95;
  double clause_decay = 0.999;
  int restart_mode = 0;         // 0: EMA of LBD (Glucose style), 1: Luby
  double restart_margin = 1.25;  // EMA mode: restart when fast > margin * slow
  int restart_min = 50;         // EMA mode: conflicts between restarts at least
  int luby_unit = 100;          // Luby mode: conflicts per unit
  int reduce_first = 2000;      // conflicts before the first learned-clause reduction
  int reduce_inc = 300;         // each next reduction comes this many conflicts later
  int core_lbd = 2;             // learned clauses with LBD <= this are kept forever
  int tier2_lbd = 6;            // LBD <= this: tier2 (kept while used)
  bool default_negative = true;  // initial phase of every variable
  // 1: a decision takes the variable's saved phase (its last value); 0: MiniSat's phase_saving=0,
  // every decision takes the fixed default polarity (default_negative, or set_phases').
  int phase_saving = 1;
  // 1: each decision's sign is random (MiniSat's rnd_pol), from a generator seeded by
  // random_seed; overrides the phase.
  int random_polarity = 0;
  // probability that a decision picks a random unassigned variable (MiniSat's random_var_freq).
  double random_var_freq = 0.0;
  double random_seed = 91648253.0;  // MiniSat's default; read at the first decision only
  // 1: all assumptions on one base level, and learned clauses leave its literals out (short
  //    clauses, as if the assumptions were units); such clauses hold only under the current
  //    assumptions and are deleted when solve returns. 0: MiniSat style, one level per
  //    assumption, every learned clause kept.
  int assumption_mode = 1;
  // base mode: a clause learned from at most this many base-level literals (assumptions and
  // what they imply) is kept for later solves, with those literals added; it then holds under
  // every assumption set. Larger ones are temporary. 0: every such clause is temporary.
  int keep_base_max = 0;
  // with decision priorities: 0: always decide by priority first; 1: alternate epochs that do
  // with epochs of plain VSIDS (priority first), epoch lengths priority_epoch * 2^(i / 2)
  // conflicts, restarting at each switch.
  int priority_mode = 1;
  int priority_epoch = 256;
  // what each solve resets to its state before the first solve (bits): 1 phases, 2 variable
  // activities, 4 restart averages. 0: all carried over from earlier solves.
  int reset_between = 0;
  // a solve after the first that passes this many conflicts resets phases, activities and
  // restart averages once, at its next restart (0: never). Warm heuristics from earlier BNN
  // queries made satisfiable ones much slower on one bench net (csrc/cardsat/README.md).
  int reset_after = 300;
};

class Solver {
 public:
  Solver();

  // --- problem (DIMACS literals) ---
  void reserve_vars(int n);  // user variables 1..n exist
  int num_vars() const { return static_cast<int>(user2int_.size()); }
  bool add_clause(const std::vector<int>& lits);
  bool add_card(int y, const std::vector<int>& lits, int bound);  // y <-> sum(lits) >= bound
  bool okay() const { return ok_; }

  // --- heuristics ---
  void set_priority(const std::vector<int>& vars, int priority);  // higher: decided first
  void bump_activity(const std::vector<int>& vars, double amount);
  void set_phases(const std::vector<int>& lits);  // the sign of each literal: its first value

  // --- solving ---
  // conflict_limit < 0: none; time_limit_s < 0: none. Learned clauses persist between calls.
  Status solve(const std::vector<int>& assumptions, int64_t conflict_limit, double time_limit_s);
  void interrupt() { interrupt_.store(true, std::memory_order_relaxed); }
  const std::vector<int>& model() const { return model_; }  // signed literals, vars 1..num_vars
  const std::vector<int>& core() const { return core_; }    // failed assumptions (unsat)
  const Stats& stats() const { return stats_; }
  Options& options() { return opts_; }
  size_t num_clauses() const { return clauses_.size(); }
  size_t num_learnts() const { return learnts_.size(); }
  size_t num_cards() const { return cards_.size(); }

 private:
  struct VarInfo {
    uint32_t reason;
    int32_t level;
    int32_t pos;   // trail position
    int32_t rpos;  // card reasons: trail position of the literal whose processing propagated
  };
  struct Watcher {
    uint32_t cref;  // kBinary set: binary clause, blocker is the other literal
    Lit blocker;
  };
  struct WLit {
    Lit lit;
    int32_t w;
  };
  struct Card {
    int32_t t;           // weighted count of processed true literals
    int32_t f;           // weighted count of processed false literals
    int32_t slack_base;  // W - b: slack of "at least b" is slack_base - f
    int32_t bm1;         // b - 1: slack of "at most b - 1" is bm1 - t
    int32_t max_w;
    Lit y;
    int32_t ystate;  // +1: y processed true, -1: processed false, 0: not processed
    uint32_t begin;  // into card_lits_, sorted by weight, largest first
    uint32_t size;
  };
  struct CardOcc {
    uint32_t card;
    int32_t data;  // (weight << 2) | kind
  };
  enum : int32_t { kOccTrue = 0, kOccFalse = 1, kOccYTrue = 2, kOccYFalse = 3 };

  // clause arena: [size][flags | lbd << 8][activity bits] lits...
  static constexpr uint32_t kHeader = 3;
  static constexpr uint32_t kLearnt = 1, kDeleted = 2, kUsed = 4;
  static constexpr uint32_t kTierShift = 4, kTierMask = 3u << 4;  // 0 core, 1 tier2, 2 local
  static constexpr uint32_t kRelocated = 64;
  static constexpr uint32_t kTemp = 128;  // learned from the current assumptions: dropped after
  uint32_t csize(uint32_t cr) const { return arena_[cr]; }
  uint32_t& cflags(uint32_t cr) { return arena_[cr + 1]; }
  uint32_t cflags(uint32_t cr) const { return arena_[cr + 1]; }
  Lit* clits(uint32_t cr) { return &arena_[cr + kHeader]; }
  float& cactivity(uint32_t cr) { return *reinterpret_cast<float*>(&arena_[cr + 2]); }
  uint32_t clbd(uint32_t cr) const { return arena_[cr + 1] >> 8; }
  uint32_t ctier(uint32_t cr) const { return (arena_[cr + 1] & kTierMask) >> kTierShift; }
  void set_lbd_tier(uint32_t cr, uint32_t lbd);

  // variables
  Var new_var();
  Lit to_lit(int dimacs);
  int to_dimacs(Lit l) const;
  int decision_level() const { return static_cast<int>(trail_lim_.size()); }
  int level(Var v) const { return vinfo_[v].level; }
  uint32_t reason(Var v) const { return vinfo_[v].reason; }

  inline void enqueue(Lit p, uint32_t reason, int32_t rpos) {
    const Var v = lit_var(p);
    vals_[p] = 1;
    vals_[lit_not(p)] = -1;
    VarInfo& vi = vinfo_[v];
    vi.reason = reason;
    vi.level = decision_level();
    vi.pos = static_cast<int32_t>(trail_.size());
    vi.rpos = rpos;
    trail_.push_back(p);
  }

  // heap
  bool heap_before(Var a, Var b) const {
    if (prio_active_ && prio_[a] != prio_[b]) return prio_[a] > prio_[b];
    return activity_[a] > activity_[b];
  }
  void heap_up(uint32_t i);
  void heap_down(uint32_t i);
  void heap_insert(Var v);
  Var heap_pop();
  void heap_rebuild();
  void reset_heuristics(int what);  // bits as Options::reset_between
  void bump_var(Var v);

  // clauses
  bool add_clause_lits(std::vector<Lit>& lits);  // at level 0; sorts and simplifies lits
  uint32_t alloc_clause(const Lit* lits, uint32_t n, bool learnt);
  void attach(uint32_t cr);
  bool locked(uint32_t cr);
  void bump_clause(uint32_t cr);
  void reduce_db();
  void purge_watches();
  void collect_garbage();
  void simplify();

  // propagation
  bool propagate();  // true: conflict (in confl_cref_ or confl_lits_)
  bool propagate_clauses(Lit p);
  bool propagate_cards(Lit p, int32_t k);
  void scan_true(uint32_t ci, int32_t slack, int32_t k);
  void scan_false(uint32_t ci, int32_t slack, int32_t k);
  void card_conflict(uint32_t ci, bool y_true_needed, int32_t k);
  void collect_processed(const Card& c, bool want_true, int32_t need, int32_t k,
                         std::vector<Lit>& out);
  void cancel_until(int level);

  // analysis
  std::pair<const Lit*, uint32_t> reason_lits(Var v);
  void explain_card(Var v, std::vector<Lit>& out);
  void reset_explanations_if_large();
  void analyze(std::vector<Lit>& out, int& bt_level, uint32_t& lbd);
  bool lit_redundant(Lit p, uint32_t abstract_levels);
  void note_base(Lit q);  // q false at the base level (> 0): the clause depends on it
  void clear_base();
  uint32_t abstract_level(Var v) const { return 1u << (level(v) & 31); }
  uint32_t compute_lbd(const Lit* lits, uint32_t n);
  void analyze_final(Lit p);
  void analyze_final_conflict();  // base mode: a conflict at the assumption level
  void drop_temporary_clauses();

  // search
  Status search();
  bool should_restart();
  bool budget_exhausted();
  Lit pick_branch();
  void set_prio_active(bool on);
  bool prio_switch_due() const;

  Options opts_;
  Stats stats_;
  bool ok_ = true;

  std::vector<Var> user2int_;  // user var - 1 -> internal var
  std::vector<int> int2user_;  // internal var -> user var (0: auxiliary)
  std::vector<int8_t> vals_;   // per literal: 1 true, -1 false, 0 unassigned
  std::vector<VarInfo> vinfo_;
  std::vector<double> activity_;
  std::vector<int32_t> prio_;
  bool has_prio_ = false;     // some variable has a nonzero priority
  bool prio_active_ = false;  // the heap orders by priority first now
  uint64_t prio_epoch_ = 0;   // alternation: epochs so far in this solve
  uint64_t prio_epoch_end_ = 0;  // conflict count that ends the current epoch
  std::vector<uint8_t> phase_;  // 1: negative
  std::vector<uint8_t> phase0_;  // phase_ when the first solve began
  std::vector<uint8_t> fixed_phase_;  // default polarity (phase_saving 0): 1 negative
  double rnd_state_ = 0.0;  // MiniSat's drand generator; 0: not seeded yet
  double drand();
  std::vector<uint8_t> seen_;
  std::vector<int32_t> heap_idx_;
  std::vector<Var> heap_;
  double var_inc_ = 1.0;
  double cla_inc_ = 1.0;

  std::vector<Lit> trail_;
  std::vector<uint32_t> trail_lim_;
  uint32_t qhead_ = 0;
  uint32_t card_head_ = 0;

  std::vector<uint32_t> arena_;
  uint64_t wasted_ = 0;
  std::vector<uint32_t> clauses_;
  std::vector<uint32_t> learnts_;
  std::vector<std::vector<Watcher>> watches_;  // by watched literal

  std::vector<Card> cards_;
  std::vector<WLit> card_lits_;
  std::vector<std::vector<CardOcc>> card_occ_;  // by literal: what to do when it becomes true

  uint32_t confl_cref_ = kNoReason;
  std::vector<Lit> confl_lits_;

  // lazy explanations, cached for one analysis
  uint32_t expl_epoch_ = 1;  // a var's cached explanation is valid iff its stamp equals this
  std::vector<uint32_t> expl_stamp_;
  std::vector<uint32_t> expl_begin_;
  std::vector<uint32_t> expl_size_;
  std::vector<Lit> expl_arena_;

  std::vector<Lit> learnt_;
  std::vector<Lit> analyze_stack_;
  std::vector<Lit> analyze_toclear_;
  std::vector<uint64_t> level_stamp_;
  uint64_t lbd_counter_ = 0;

  std::vector<Lit> assumptions_;
  std::vector<uint8_t> assumed_;  // per var, base-mode solve: 1 assumption, 2 pending unit
  std::vector<Lit> pending_units_;  // learned units that hold without the assumptions
  int base_level_ = 0;            // 1 in a base-mode solve with assumptions, else 0
  bool analysis_temp_ = false;    // the clause being learned depends on a temporary clause
  std::vector<Lit> analysis_base_;  // base-level literals (false) the clause depends on
  std::vector<uint8_t> base_seen_;  // per var: in analysis_base_
  bool made_temp_ = false;        // temporary clauses exist
  std::vector<int> model_;
  std::vector<int> core_;

  // restarts and reductions
  double ema_fast_ = 0.0, ema_slow_ = 0.0;
  uint64_t ema_count_ = 0;
  uint64_t conflicts_at_restart_ = 0;
  uint64_t luby_index_ = 0;
  uint64_t next_reduce_ = 0;
  uint64_t reductions_ = 0;
  uint32_t simp_trail_ = 0xFFFFFFFFu;

  // limits
  int64_t conflict_budget_ = -1;  // absolute conflict count, -1 none
  bool has_deadline_ = false;
  std::chrono::steady_clock::time_point deadline_;
  uint32_t limit_ticks_ = 0;
  bool stop_ = false;
  std::atomic<bool> interrupt_{false};

  std::vector<int32_t> tmp_weight_;  // per var, for add_card
  std::vector<Lit> tmp_lits_;
};

}  // namespace cardsat
