// The cost model between the two kinds of step, calibrated from the steps'
// own timings.
//
// A step's time is modelled as theta . (rows reached, rows computed): a cell
// step reaches the members of the cells it visits (v rows: by binary search
// it finds the ones its row bound cannot rule out, computes those and keeps
// the cells' order, heap and anchors); a dense step scans every row (n) and
// computes the same rows (the same bounds decide), on the whole team. Each
// kind keeps a least-squares fit of its two per-row costs
// over its recent steps (old steps decay, so the fit follows the machine's
// load), per team size (a dense step on two threads costs about half a step
// on one; a cell step mostly runs on one), pulled toward a prior so that a
// kind not measured yet still has a guess. The rows a step would compute
// are predicted from the recent ratio computed / reached, which both kinds
// measure.
//
// Why measured: the fixed rule it replaces (a cell step may visit at most
// 0.5 / team of the rows) was right on one thread and too strict on two: on
// a quiet 2-core Intel machine it took dense steps for 972 of 999 steps at
// 200k x 100 and was no faster than one thread taking cell steps throughout.
// Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace pcoreset {
namespace PCS_ISA {
namespace {

// Least squares t ~ th0 * x0 + th1 * x1 with exponential forgetting and a
// ridge toward a prior (th0p, th1p), the prior weighing as `prior_steps`
// steps of typical size (s0, s1).
class StepFit {
 public:
  void init(double th0p, double th1p, double s0, double s1, double prior_steps) {
    p0_ = th0p;
    p1_ = th1p;
    w0_ = prior_steps * s0 * s0;
    w1_ = prior_steps * s1 * s1;
    m00_ = m01_ = m11_ = b0_ = b1_ = 0.0;
    seen_ = 0;
    solve();
  }

  void add(double x0, double x1, double t) {
    m00_ = kKeep * m00_ + x0 * x0;
    m01_ = kKeep * m01_ + x0 * x1;
    m11_ = kKeep * m11_ + x1 * x1;
    b0_ = kKeep * b0_ + x0 * t;
    b1_ = kKeep * b1_ + x1 * t;
    ++seen_;
    solve();
  }

  // A step of the other kind ran: this fit's measurements age, so a kind
  // not run for a while drifts back to its prior and gets tried again (one
  // burst of load while it ran must not rule it out for the rest of the
  // run). Slower than a step of its own ages them (kFade against kKeep):
  // about 35 steps of the other kind halve their weight, so a kind that lost
  // is not tried again at once (each try of the cells costs a rebuild).
  void fade() {
    if (seen_ == 0) return;
    m00_ *= kFade;
    m01_ *= kFade;
    m11_ *= kFade;
    b0_ *= kFade;
    b1_ *= kFade;
    solve();
  }

  double predict(double x0, double x1) const { return th0_ * x0 + th1_ * x1; }
  int64_t seen() const { return seen_; }
  double th0() const { return th0_; }
  double th1() const { return th1_; }

 private:
  void solve() {
    const double a = m00_ + w0_, b = m01_, d = m11_ + w1_;
    const double r0 = b0_ + w0_ * p0_, r1 = b1_ + w1_ * p1_;
    const double det = a * d - b * b;
    th0_ = det > 0 ? (r0 * d - b * r1) / det : p0_;
    th1_ = det > 0 ? (a * r1 - b * r0) / det : p1_;
    // a negative cost is collinearity noise: fit the other alone
    if (th0_ < 0) {
      th0_ = 0;
      th1_ = std::max(0.0, r1 / d);
    } else if (th1_ < 0) {
      th1_ = 0;
      th0_ = std::max(0.0, r0 / a);
    }
  }

  static constexpr double kKeep = 0.9;  // about the last 10 steps
  static constexpr double kFade = 0.98;
  double p0_ = 0, p1_ = 0, w0_ = 0, w1_ = 0;
  double m00_ = 0, m01_ = 0, m11_ = 0, b0_ = 0, b1_ = 0;
  double th0_ = 0, th1_ = 0;
  int64_t seen_ = 0;
};

class StepCostModel {
 public:
  // Priors, per row on one thread, measured on a 2-core Intel machine at
  // 200k x 100 (benchmarks/RESULTS.md, "The cost model, measured"): a dense
  // step scans a row in about 6 ns and computes a 100-value row in about
  // 0.35 us; a cell step cost about 10 ns per member of the cells it
  // visited when it scanned them all (it now reads only the rows in reach,
  // so the prior errs toward dense steps). The first measured steps replace
  // them, and a kind not run for a while fades back to its prior.
  void init(int64_t n, int64_t c, int max_team) {
    n_ = static_cast<double>(n);
    const double comp = 0.35e-6 * static_cast<double>(std::max<int64_t>(c, 8)) / 100.0;
    dense_.assign(static_cast<size_t>(max_team) + 1, StepFit());
    cell_.assign(static_cast<size_t>(max_team) + 1, StepFit());
    for (int t = 1; t <= max_team; ++t) {
      dense_[t].init(6e-9 / t, comp / t, n_, n_ / 32, 0.5);
      cell_[t].init(10e-9, comp, n_ / 4, n_ / 32, 0.5);
    }
  }

  void dense_done(int team, int64_t reach, int64_t computed, double seconds) {
    dense_[slot(team)].add(n_, static_cast<double>(computed), seconds);
    for (StepFit& f : cell_) f.fade();
    ratio(reach, computed);
  }

  void cell_done(int team, int64_t visited, int64_t computed, double seconds) {
    cell_[slot(team)].add(static_cast<double>(visited), static_cast<double>(computed), seconds);
    for (StepFit& f : dense_) f.fade();
    ratio(visited, computed);
  }

  void build_done(double seconds) { build_ = build_ < 0 ? seconds : 0.5 * (build_ + seconds); }

  // Predicted seconds of each kind of step that would reach `rows` rows.
  double cell_cost(int team, double rows) const {
    return cell_[slot(team)].predict(rows, rows * computed_per_reached_);
  }
  double dense_cost(int team, double rows) const {
    return dense_[slot(team)].predict(n_, rows * computed_per_reached_);
  }
  // Seconds per computed row, as the kind of step now running measures it.
  double computed_row_cost(int team, bool dense) const {
    return dense ? dense_[slot(team)].th1() : cell_[slot(team)].th1();
  }
  // A rebuild of the cells (measured; about one dense step before that).
  double build_cost(int team) const { return build_ >= 0 ? build_ : dense_cost(team, n_); }

 private:
  size_t slot(int team) const {
    return static_cast<size_t>(std::max(1, std::min(team, static_cast<int>(dense_.size()) - 1)));
  }
  void ratio(int64_t reached, int64_t computed) {
    if (reached <= 0) return;
    const double r = static_cast<double>(computed) / static_cast<double>(reached);
    computed_per_reached_ += (std::min(1.0, r) - computed_per_reached_) / 8.0;
  }

  double n_ = 1;
  std::vector<StepFit> dense_, cell_;
  double computed_per_reached_ = 0.1;
  double build_ = -1;
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
