// Python binding of cardsat: the module verifriend._cardsat.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <tuple>
#include <vector>

#include "solver.hpp"

namespace nb = nanobind;
using cardsat::Solver;
using cardsat::Status;

namespace {

const char* status_name(Status s) {
  switch (s) {
    case Status::Sat:
      return "sat";
    case Status::Unsat:
      return "unsat";
    default:
      return "unknown";
  }
}

nb::dict stats_dict(const Solver& s) {
  const cardsat::Stats& st = s.stats();
  nb::dict d;
  d["conflicts"] = st.conflicts;
  d["decisions"] = st.decisions;
  d["propagations"] = st.propagations;
  d["card_propagations"] = st.card_propagations;
  d["card_conflicts"] = st.card_conflicts;
  d["card_explanations"] = st.card_explanations;
  d["restarts"] = st.restarts;
  d["learned"] = st.learned;
  d["learned_literals"] = st.learned_literals;
  d["minimized_literals"] = st.minimized_literals;
  d["temporary_learned"] = st.temporary_learned;
  d["kept_with_base"] = st.kept_with_base;
  d["heuristic_resets"] = st.heuristic_resets;
  d["reductions"] = st.reductions;
  d["deleted"] = st.deleted;
  d["solves"] = st.solves;
  d["time_s"] = st.time_s;
  d["clauses"] = s.num_clauses();
  d["learnts"] = s.num_learnts();
  d["cards"] = s.num_cards();
  return d;
}

}  // namespace

NB_MODULE(_cardsat, m) {
  m.doc() = "cardsat: a CDCL SAT solver with native reified cardinality constraints";

  nb::class_<Solver>(m, "Solver",
                     "CDCL solver over DIMACS literals with cards y <-> sum(lits) >= bound.\n"
                     "Not thread-safe: one thread at a time per solver (solve releases the GIL).")
      .def(nb::init<>())
      .def("reserve_vars", &Solver::reserve_vars, nb::arg("n"),
           "Make variables 1..n exist (the model then covers them all).")
      .def_prop_ro("num_vars", &Solver::num_vars)
      .def("add_clause", &Solver::add_clause, nb::arg("lits"),
           "Add a clause; False once the formula is known unsatisfiable.")
      .def(
          "add_clauses",
          [](Solver& s, const std::vector<std::vector<int>>& clauses) {
            for (const auto& c : clauses) s.add_clause(c);
            return s.okay();
          },
          nb::arg("clauses"))
      .def("add_card", &Solver::add_card, nb::arg("y"), nb::arg("lits"), nb::arg("bound"),
           "Add y <-> (number of true lits, with multiplicity) >= bound.")
      .def(
          "add_cards",
          [](Solver& s, const std::vector<std::tuple<int, std::vector<int>, int>>& cards) {
            for (const auto& c : cards) s.add_card(std::get<0>(c), std::get<1>(c), std::get<2>(c));
            return s.okay();
          },
          nb::arg("cards"))
      .def("okay", &Solver::okay, "False once unsatisfiable without assumptions.")
      .def("set_decision_priority", &Solver::set_priority, nb::arg("vars"),
           nb::arg("priority") = 1,
           "Variables with a higher priority (default 0) are decided before all others.")
      .def("bump_activity", &Solver::bump_activity, nb::arg("vars"), nb::arg("amount") = 1.0,
           "Add to the VSIDS activity of the given variables.")
      .def("set_phases", &Solver::set_phases, nb::arg("lits"),
           "The first value tried for each variable: the sign of its literal.")
      .def(
          "solve",
          [](Solver& s, const std::vector<int>& assumptions, long long conflict_limit,
             double time_limit) {
            Status st;
            {
              nb::gil_scoped_release release;
              st = s.solve(assumptions, conflict_limit, time_limit);
            }
            return std::string(status_name(st));
          },
          nb::arg("assumptions") = std::vector<int>{}, nb::arg("conflict_limit") = -1,
          nb::arg("time_limit") = -1.0,
          "'sat', 'unsat' or 'unknown' (a limit was reached). Negative limits: none.")
      .def("interrupt", &Solver::interrupt, "Make a running solve return 'unknown' soon.")
      .def("model", &Solver::model, "After 'sat': signed literals of variables 1..num_vars.")
      .def("core", &Solver::core,
           "After 'unsat' under assumptions: assumptions that suffice for unsat.")
      .def("stats", &stats_dict, "Cumulative statistics.")
      .def(
          "set_option",
          [](Solver& s, const std::string& name, double value) {
            cardsat::Options& o = s.options();
            if (name == "var_decay") {
              o.var_decay = value;
            } else if (name == "clause_decay") {
              o.clause_decay = value;
            } else if (name == "restart_mode") {
              o.restart_mode = static_cast<int>(value);
            } else if (name == "restart_margin") {
              o.restart_margin = value;
            } else if (name == "restart_min") {
              o.restart_min = static_cast<int>(value);
            } else if (name == "luby_unit") {
              o.luby_unit = static_cast<int>(value);
            } else if (name == "reduce_first") {
              o.reduce_first = static_cast<int>(value);
            } else if (name == "reduce_inc") {
              o.reduce_inc = static_cast<int>(value);
            } else if (name == "core_lbd") {
              o.core_lbd = static_cast<int>(value);
            } else if (name == "tier2_lbd") {
              o.tier2_lbd = static_cast<int>(value);
            } else if (name == "priority_mode") {
              o.priority_mode = static_cast<int>(value);
            } else if (name == "priority_epoch") {
              o.priority_epoch = static_cast<int>(value);
            } else if (name == "assumption_mode") {
              o.assumption_mode = static_cast<int>(value);
            } else if (name == "keep_base_max") {
              o.keep_base_max = static_cast<int>(value);
            } else if (name == "reset_between") {
              o.reset_between = static_cast<int>(value);
            } else if (name == "reset_after") {
              o.reset_after = static_cast<int>(value);
            } else if (name == "phase_saving") {
              o.phase_saving = static_cast<int>(value);
            } else if (name == "random_polarity") {
              o.random_polarity = static_cast<int>(value);
            } else if (name == "random_var_freq") {
              o.random_var_freq = value;
            } else if (name == "random_seed") {
              o.random_seed = value;
            } else if (name == "default_negative") {
              o.default_negative = value != 0.0;
            } else {
              throw nb::value_error(("cardsat: unknown option " + name).c_str());
            }
          },
          nb::arg("name"), nb::arg("value"), "Tune a heuristic (for experiments).");
}
