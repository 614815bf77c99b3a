// The device-resident k-center state (State in kcenter_cuda.h) for one
// storage type: device memory, the private stream, and the launches of every
// method. Included by kcenter_<dtype>.cu, which instantiate it per dtype so
// the kernels compile in parallel.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_memory.cuh"
#include "kcenter_cuda.h"
#include "kernels.cuh"
#include "runtime.cuh"

namespace pcoreset {
namespace cuda {

template <typename S, typename A, bool kLogits>
class TypedState final : public State, private DeviceMemory<S, A> {
  using Base = DeviceMemory<S, A>;
  using typename Base::Call;
  using Base::p_;
  using Base::device_;
  using Base::async_alloc_;
  using Base::stream_;
  using Base::ev_in_;
  using Base::ev_out_;
  using Base::s_;
  using Base::k_;
  using Base::kcap_;
  using Base::generation_;
  using Base::bytes_;
  using Base::ensure_centers;
  using Base::ensure_run;

 public:
  TypedState(const void* x, const StateOptions& o, void* caller) : Base(o.params, o.device) {
    try {
      construct(x, o, caller);
    } catch (...) {
      release_all();
      throw;
    }
  }

  ~TypedState() override { release_all(); }

 private:
  void construct(const void* x, const StateOptions& o, void* caller) {
    DeviceGuard guard(device_);
    int pools = 0, coop = 0;
    check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device_), "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_), "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device_), "cudaDeviceGetAttribute");
    sms_ = std::max(sms_, 1);
    async_alloc_ = pools != 0;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&ev_in_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&ev_out_, cudaEventDisableTiming), "cudaEventCreate");
    choose_modes(o, coop != 0);

    s_ = Dev<S, A>{};
    s_.x = static_cast<const S*>(x);
    s_.n = p_.n;
    s_.c = p_.c;
    s_.inv_t = static_cast<A>(1.0 / p_.temperature);
    s_.prune = p_.prune;
    Call call(*this, caller);
    const size_t n = static_cast<size_t>(p_.n);
    s_.ctl = this->template alloc<Ctl>(1, "the control block");
    s_.mind = this->template alloc<A>(n, "the running minimum");
    s_.nearest = this->template alloc<int32_t>(n, "the nearest centers");
    s_.cvec = this->template alloc<A>(static_cast<size_t>(p_.c), "the center vector");
    if (std::is_same<A, double>::value) {
      s_.bb_d = this->template alloc<double>(kMaxGridBlocks, "the argmax slots");
      s_.bb_r = this->template alloc<long long>(kMaxGridBlocks, "the argmax slots");
    }
    if (kLogits) s_.sm = this->template alloc<SoftmaxRow<A>>(n, "the softmax constants");
    ensure_run(1);  // slot 0 of the single steps: they never allocate after changing the state
    check(cudaMemsetAsync(s_.ctl, 0, sizeof(Ctl), stream_), "cudaMemsetAsync(ctl)");
    launch(init_kernel<S, A>, flat_grid(p_.n), kThreads, 0, stream_, s_);
    check(cudaGetLastError(), "init_kernel");
    if (kLogits) {
      launch(softmax_kernel<S, A>, warp_grid(p_.n), kThreads, 0, stream_, s_, const_cast<SoftmaxRow<A>*>(s_.sm));
      check(cudaGetLastError(), "softmax_kernel");
    }
    call.finish();
  }

  // Frees everything; reports nothing (at interpreter exit the context may be gone).
  void release_all() noexcept {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    this->release_memory();
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
  }

 public:
  // ---- the start (initial centers) ---------------------------------------------

  void seed_rows(const int64_t* rows, int64_t count, void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    ensure_centers(k_ + count);
    const int64_t* d_rows = call.upload(rows, static_cast<size_t>(count));
    const int64_t first = add_row_centers(d_rows, count);
    assign_exact(first, first + count);
    call.finish();
  }

  void seed_rows_with_candidates(const int64_t* rows, int64_t count, const int64_t* cand, int64_t k,
                                 void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    ensure_centers(k_ + count);
    const int64_t* d_rows = call.upload(rows, static_cast<size_t>(count));
    const int64_t* d_cand = k > 0 ? call.upload(cand, static_cast<size_t>(p_.n * k)) : nullptr;
    const int64_t first = add_row_centers(d_rows, count);
    assign_candidates(d_cand, k, first, count);
    call.finish();
  }

  void seed_vectors(const double* vecs, int64_t count, void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    ensure_centers(k_ + count);
    const double* d_vecs = call.upload(vecs, static_cast<size_t>(count * p_.c));
    const int64_t first = add_vec_centers(d_vecs, count);
    assign_exact(first, first + count);
    call.finish();
  }

  void seed_vectors_with_candidates(const double* vecs, int64_t count, const int64_t* cand, int64_t k,
                                    void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    ensure_centers(k_ + count);
    const double* d_vecs = call.upload(vecs, static_cast<size_t>(count * p_.c));
    const int64_t* d_cand = k > 0 ? call.upload(cand, static_cast<size_t>(p_.n * k)) : nullptr;
    const int64_t first = add_vec_centers(d_vecs, count);
    assign_candidates(d_cand, k, first, count);
    call.finish();
  }

  void exclude(const int64_t* rows, int64_t count, void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    const int64_t* d_rows = call.upload(rows, static_cast<size_t>(count));
    launch(exclude_kernel<S, A>, flat_grid(count), kThreads, 0, stream_, s_, d_rows, count);
    check(cudaGetLastError(), "exclude_kernel");
    call.finish();
  }

  // ---- single steps ------------------------------------------------------------

  StepResult push_row(int64_t i, void* caller) override {
    Call call(*this, caller);
    ensure_centers(k_ + 1);
    const int64_t id = k_;
    launch(prep_kernel<S, A, kLogits>, 1, kThreads, 0, stream_, s_, i, id);
    check(cudaGetLastError(), "prep_kernel(push_row)");
    const StepResult r = update_step(id, call);
    call.finish();
    return r;
  }

  StepResult push_center(const double* vec, void* caller) override {
    Call call(*this, caller);
    ensure_centers(k_ + 1);
    const double* d_vec = call.upload(vec, static_cast<size_t>(p_.c));
    const int64_t id = add_vec_centers(d_vec, 1);
    launch(center_to_cvec_kernel<S, A>, flat_grid(p_.c), kThreads, 0, stream_, s_, id);
    check(cudaGetLastError(), "center_to_cvec_kernel");
    const StepResult r = update_step(id, call);
    call.finish();
    return r;
  }

  StepResult current_best(void* caller) override {
    Call call(*this, caller);
    clear_slot0();
    launch_pass(kScan, 0, -1);
    const StepResult r = read_slot0(call);
    call.finish();
    return r;
  }

  StepResult farthest_from(const double* vec, void* caller) override {
    Call call(*this, caller);
    const double* d_vec = call.upload(vec, static_cast<size_t>(p_.c));
    launch(set_cvec_kernel<S, A>, flat_grid(p_.c), kThreads, 0, stream_, s_, d_vec);
    check(cudaGetLastError(), "set_cvec_kernel");
    clear_slot0();
    launch_pass(kProbe, 0, -1);
    const StepResult r = read_slot0(call);
    call.finish();
    return r;
  }

  // ---- values ----------------------------------------------------------------

  void row_vector(int64_t i, double* out, void* caller) override {
    Call call(*this, caller);
    const int64_t* d_row = call.upload(&i, 1);
    A* d_out = call.template temp<A>(static_cast<size_t>(p_.c));
    launch(rows_values_kernel<S, A, kLogits>, flat_grid(p_.c), kThreads, 0, stream_, s_, d_row, 1, d_out);
    check(cudaGetLastError(), "rows_values_kernel");
    std::vector<A> host(static_cast<size_t>(p_.c));
    check(cudaMemcpyAsync(host.data(), d_out, host.size() * sizeof(A), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(row)");
    call.finish();
    for (size_t j = 0; j < host.size(); ++j) out[j] = static_cast<double>(host[j]);
  }

  void rows_values(const int64_t* rows, int64_t count, void* out_device, void* caller) override {
    if (count <= 0) return;
    Call call(*this, caller);
    const int64_t* d_rows = call.upload(rows, static_cast<size_t>(count));
    launch(rows_values_kernel<S, A, kLogits>, flat_grid(count * p_.c), kThreads, 0, stream_, 
        s_, d_rows, count, static_cast<A*>(out_device));
    check(cudaGetLastError(), "rows_values_kernel");
    call.finish();
  }

  void mean_vector(double* out, void* caller) override {
    Call call(*this, caller);
    const double* d_mean = compute_mean(call);
    check(cudaMemcpyAsync(out, d_mean, static_cast<size_t>(p_.c) * sizeof(double), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(mean)");
    call.finish();
  }

  void min_dist2(double* out, void* caller) override {
    Call call(*this, caller);
    double* d_out = call.template temp<double>(static_cast<size_t>(p_.n));
    launch(min_dist_kernel<S, A>, flat_grid(p_.n), kThreads, 0, stream_, s_, d_out);
    check(cudaGetLastError(), "min_dist_kernel");
    check(cudaMemcpyAsync(out, d_out, static_cast<size_t>(p_.n) * sizeof(double), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(min_dist2)");
    call.finish();
  }

  void export_state(double* mind, int64_t* nearest, double* centers, void* caller) override {
    Call call(*this, caller);
    const size_t n = static_cast<size_t>(p_.n), kc = static_cast<size_t>(k_ * p_.c);
    double* d_mind = call.template temp<double>(n);
    long long* d_near = call.template temp<long long>(n);
    double* d_ctr = call.template temp<double>(kc);
    launch(export_kernel<S, A>, flat_grid(p_.n), kThreads, 0, stream_, s_, d_mind, d_near);
    check(cudaGetLastError(), "export_kernel");
    if (kc) {
      launch(centers_out_kernel<S, A>, flat_grid(k_ * p_.c), kThreads, 0, stream_, s_, k_, d_ctr);
      check(cudaGetLastError(), "centers_out_kernel");
    }
    check(cudaMemcpyAsync(mind, d_mind, n * sizeof(double), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(mind)");
    check(cudaMemcpyAsync(nearest, d_near, n * sizeof(long long), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(nearest)");
    if (kc)
      check(cudaMemcpyAsync(centers, d_ctr, kc * sizeof(double), cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync(centers)");
    call.finish();
  }

  void load_state(const double* mind, const int64_t* nearest, const double* centers, int64_t n_centers,
                  void* caller) override {
    Call call(*this, caller);
    ensure_centers(n_centers);
    const size_t n = static_cast<size_t>(p_.n);
    const double* d_mind = call.upload(mind, n);
    const long long* d_near = call.upload(reinterpret_cast<const long long*>(nearest), n);
    const double* d_ctr = call.upload(centers, static_cast<size_t>(n_centers * p_.c));
    launch(import_kernel<S, A>, flat_grid(p_.n), kThreads, 0, stream_, s_, d_mind, d_near);
    check(cudaGetLastError(), "import_kernel");
    k_ = 0;
    if (n_centers > 0) add_vec_centers(d_ctr, n_centers);
    refresh_radii();
    call.finish();
  }

  CudaStats stats(void* caller) override {
    Call call(*this, caller);
    Ctl h{};
    check(cudaMemcpyAsync(&h, s_.ctl, sizeof h, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(ctl)");
    call.finish();
    CudaStats out = stats_;
    out.counts.rows_computed = static_cast<int64_t>(h.rows_computed);
    out.counts.center_dists = static_cast<int64_t>(h.center_dists);
    out.pass = prefetch_ ? "prefetch" : "plain";
    out.grid_blocks = steps_ == StepMode::kPersistent ? persistent_grid_ : pass_grid_;
    return out;
  }

  const KCenterParams& params() const override { return p_; }
  int64_t num_centers() const override { return k_; }
  size_t device_bytes() const override { return bytes_; }

  // ---- the greedy loop -----------------------------------------------------------

  RunEnd run(int64_t budget, int64_t* picks, double* radii2, int64_t* recorded, const ProgressFn& progress,
             void* caller) override {
    *recorded = 0;
    if (budget <= 0) return RunEnd::kFinished;
    Call call(*this, caller);
    ensure_centers(k_ + budget - 1);
    ensure_run(budget);
    const bool mean_start = k_ == 0;
    const double* d_mean = mean_start ? compute_mean(call) : nullptr;
    Ctl h{};
    h.t = 0;
    h.budget = budget;
    h.base = k_;
    h.mean_start = mean_start ? 1 : 0;
    h.error = 0;
    check(cudaMemcpyAsync(s_.ctl, &h, offsetof(Ctl, done), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(ctl)");
    if (std::is_same<A, float>::value)
      check(cudaMemsetAsync(s_.keys, 0, static_cast<size_t>(budget + 1) * sizeof(unsigned long long), stream_),
            "cudaMemsetAsync(keys)");
    if (budget > 1)
      check(cudaMemsetAsync(s_.radius2 + k_, 0, static_cast<size_t>(budget - 1) * sizeof(A), stream_),
            "cudaMemsetAsync(radius2)");
    // Slot 0: the first pick.
    if (mean_start) {
      launch(set_cvec_kernel<S, A>, flat_grid(p_.c), kThreads, 0, stream_, s_, d_mean);
      check(cudaGetLastError(), "set_cvec_kernel(mean)");
      launch_pass(kProbe, 0, -1);
    } else {
      launch_pass(kScan, 0, -1);
    }
    // From here on the device state changes step by step: whatever ends the
    // run (a stop, an exception), the host learns how many picks the device
    // recorded and counts them as centers, so that the state stays the one
    // an uninterrupted run of those steps leaves.
    //
    // An error inside the steps (a failed launch, a fault) may leave the
    // step in progress half done (its center pushed, its pass not run): the
    // picks recorded are still reported, but the state refuses every later
    // call rather than continue from a state no uninterrupted run leaves.
    bool finished = false;
    try {
      finished = run_steps(budget, progress);
    } catch (const std::exception& e) {
      this->broken_ = e.what();
      try {
        settle_run(budget, picks, radii2, recorded);
      } catch (...) {  // the device is gone: the first error is the one to report
      }
      throw;
    }
    const bool exhausted = settle_run(budget, picks, radii2, recorded);
    call.finish();
    if (exhausted) return RunEnd::kExhausted;
    return finished ? RunEnd::kFinished : RunEnd::kStopped;
  }

 private:
  // ---- pieces of the methods ---------------------------------------------------

  int flat_grid(int64_t work) const { return grid_for(kThreads, work, int64_t(sms_) * 8); }
  int warp_grid(int64_t rows) const { return grid_for(kWarpsPerBlock, rows, int64_t(sms_) * 16); }
  size_t center_smem() const { return smem_center_ ? static_cast<size_t>(p_.c) * sizeof(A) : 0; }

  int64_t add_row_centers(const int64_t* d_rows, int64_t count) {
    const int64_t first = k_;
    launch(add_row_centers_kernel<S, A, kLogits>, warp_grid(count), kThreads, 0, stream_, s_, d_rows, count, first);
    check(cudaGetLastError(), "add_row_centers_kernel");
    k_ += count;
    return first;
  }

  int64_t add_vec_centers(const double* d_vecs, int64_t count) {
    const int64_t first = k_;
    launch(add_vec_centers_kernel<S, A>, flat_grid(count * p_.c), kThreads, 0, stream_, s_, d_vecs, count, first);
    check(cudaGetLastError(), "add_vec_centers_kernel");
    k_ += count;
    return first;
  }

  void assign_exact(int64_t first, int64_t end) {
    launch(assign_exact_kernel<S, A, kLogits>, warp_grid(p_.n), kThreads, 0, stream_, s_, first, end);
    check(cudaGetLastError(), "assign_exact_kernel");
    refresh_radii();
  }

  void assign_candidates(const int64_t* d_cand, int64_t k, int64_t first, int64_t count) {
    if (k > 0) {
      launch(assign_candidates_kernel<S, A, kLogits>, warp_grid(p_.n), kThreads, 0, stream_, s_, d_cand, k, first, count);
      check(cudaGetLastError(), "assign_candidates_kernel");
    }
    refresh_radii();
  }

  // Exact radius of every center, as the CPU kernel after a seed.
  void refresh_radii() {
    check(cudaMemsetAsync(s_.radius2, 0, static_cast<size_t>(k_) * sizeof(A), stream_), "cudaMemsetAsync(radius2)");
    launch(radius_kernel<S, A>, flat_grid(p_.n), kThreads, 0, stream_, s_);
    check(cudaGetLastError(), "radius_kernel");
  }

  // The pool mean in float64 (a temporary of the call).
  const double* compute_mean(Call& call) {
    const int64_t nblocks = (p_.n + kMeanBlock - 1) / kMeanBlock;
    double* part = call.template temp<double>(static_cast<size_t>(nblocks * p_.c));
    double* mean = call.template temp<double>(static_cast<size_t>(p_.c));
    launch(mean_part_kernel<S, A, kLogits>, flat_grid(nblocks * p_.c), kThreads, 0, stream_, s_, part, nblocks);
    check(cudaGetLastError(), "mean_part_kernel");
    launch(mean_final_kernel<S, A>, flat_grid(p_.c), kThreads, 0, stream_, s_, part, nblocks, mean);
    check(cudaGetLastError(), "mean_final_kernel");
    return mean;
  }

  void clear_slot0() {  // float64 slots are always written whole by the pass
    if (std::is_same<A, float>::value)
      check(cudaMemsetAsync(s_.keys, 0, sizeof(unsigned long long), stream_), "cudaMemsetAsync(slot)");
  }

  StepResult read_slot0(Call&) {
    StepResult r;
    if (std::is_same<A, float>::value) {
      unsigned long long key = 0;
      check(cudaMemcpyAsync(&key, s_.keys, sizeof key, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(slot)");
      check(cudaStreamSynchronize(stream_), "k-center step (cudaStreamSynchronize)");
      if (key) {
        r.row = key_row(key);
        r.dist2 = static_cast<double>(key_dist2(key));
      } else {  // no eligible row: as the CPU state, (-1, 0)
        r.row = -1;
        r.dist2 = 0.0;
      }
    } else {
      long long row = -1;
      double d = -1.0;
      check(cudaMemcpyAsync(&row, s_.res_r, sizeof row, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(slot)");
      check(cudaMemcpyAsync(&d, s_.res_d, sizeof d, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(slot)");
      check(cudaStreamSynchronize(stream_), "k-center step (cudaStreamSynchronize)");
      r.row = row;
      r.dist2 = row >= 0 ? d : 0.0;
    }
    return r;
  }

  // dcc + pass for the center `id` already in cvec (and stored), result in slot 0.
  StepResult update_step(int64_t id, Call& call) {
    clear_slot0();
    if (p_.prune) check(launch_dcc(id), "dcc_kernel");
    launch_pass(kUpdate, 0, id);
    k_ = std::max<int64_t>(k_, id + 1);
    stats_.counts.steps += 1;
    stats_.counts.rows_visited += p_.n;
    return read_slot0(call);
  }

  cudaError_t launch_dcc(long long fixed_id) {
    const int grid = grid_for(kWarpsPerBlock, std::max<int64_t>(kcap_, 1), int64_t(sms_) * kBlocksPerSm);
    if (smem_center_)
      launch(dcc_kernel<S, A, kLogits, true>, grid, kThreads, center_smem(), stream_, s_, fixed_id);
    else
      launch(dcc_kernel<S, A, kLogits, false>, grid, kThreads, 0, stream_, s_, fixed_id);
    return cudaGetLastError();
  }

  cudaError_t launch_pass_nocheck(int mode, long long slot, long long id) {
    if (!smem_center_)
      launch(pass_kernel<S, A, kLogits, false, true>, pass_grid_, kThreads, 0, stream_, s_, mode, slot, id);
    else if (prefetch_)
      launch(pass_kernel<S, A, kLogits, true, true>, pass_grid_, kThreads, center_smem(), stream_, s_, mode, slot, id);
    else
      launch(pass_kernel<S, A, kLogits, true, false>, pass_grid_, kThreads, center_smem(), stream_, s_, mode, slot,
             id);
    return cudaGetLastError();
  }
  void launch_pass(int mode, long long slot, long long id) {
    check(launch_pass_nocheck(mode, slot, id), "pass_kernel");
  }

  // One step of a run as three launches (prep, dcc, pass), all reading the
  // step number from ctl.
  // unit_failed_ names the kernel whose launch failed.
  cudaError_t launch_unit() {
    launch(prep_kernel<S, A, kLogits>, 1, kThreads, 0, stream_, s_, -1, -1);
    cudaError_t e = cudaGetLastError();
    unit_failed_ = "prep_kernel";
    if (e != cudaSuccess) return e;
    if (p_.prune) {
      e = launch_dcc(-1);
      unit_failed_ = "dcc_kernel";
      if (e != cudaSuccess) return e;
    }
    unit_failed_ = "pass_kernel";
    return launch_pass_nocheck(kUpdate, -1, -1);
  }

  // Captures kGraphSteps units once per layout of the device buffers.
  bool ensure_graph() {
    if (exec_ && graph_generation_ == generation_) return true;
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    bool ok = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    if (ok) {
      for (int u = 0; u < kGraphSteps && ok; ++u) ok = launch_unit() == cudaSuccess;
      cudaGraph_t g = nullptr;
      const bool ended = cudaStreamEndCapture(stream_, &g) == cudaSuccess;
      graph_ = g;
      ok = ok && ended && g != nullptr && cudaGraphInstantiate(&exec_, g, 0) == cudaSuccess;
    }
    if (!ok) {
      cudaGetLastError();  // clear the capture error; the run goes on with plain launches
      if (exec_) cudaGraphExecDestroy(exec_);
      exec_ = nullptr;
      stats_.note = "graph capture failed: the steps ran as plain launches";
      return false;
    }
    graph_generation_ = generation_;
    return true;
  }

  // Steps [t0, t1) of the run: records picks t0..t1-1.
  // A cooperative launch the device refuses (cudaErrorCooperativeLaunchTooLarge
  // when fewer SMs are free than the occupancy query assumed, as under MPS)
  // switches the state to graph steps and launches the same segment that
  // way: the three-kernel steps read the step number from ctl->t, which the
  // persistent kernel keeps, so the run goes on where it stopped.
  void launch_segment(int64_t t0, int64_t t1, int64_t budget, bool& graphed) {
    if (steps_ == StepMode::kPersistent) {
      Dev<S, A> dev = s_;
      long long a0 = t0, a1 = t1;
      const cudaError_t e =
          prefetch_ ? launch_cooperative(step_kernel<S, A, kLogits, true>, persistent_grid_, kThreads, center_smem(),
                                         stream_, dev, a0, a1)
                    : launch_cooperative(step_kernel<S, A, kLogits, false>, persistent_grid_, kThreads, center_smem(),
                                         stream_, dev, a0, a1);
      if (e == cudaSuccess) return;
      if (e != cudaErrorCooperativeLaunchTooLarge && e != cudaErrorNotSupported)
        check(e, "cudaLaunchCooperativeKernel(step_kernel)");
      cudaGetLastError();
      stats_.note = std::string("cooperative launch refused (") + cudaGetErrorName(e) + "): graph steps instead";
      steps_ = StepMode::kGraph;
      graphed = budget >= 2 * kGraphSteps && ensure_graph();
      stats_.step_mode = graphed ? "graph" : "launches";
      stats_.cuda_graph = graphed;
    }
    // Whole graphs only inside the segment, the rest step by step: a graph
    // replayed past t1 would record picks beyond the segment's end (the
    // segment may start anywhere after a fallback), and progress reports and
    // stop requests would lag behind the device.
    int64_t u = t0;
    if (graphed)
      for (; u + kGraphSteps <= t1; u += kGraphSteps) check(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch");
    for (; u < t1; ++u) {
      const cudaError_t e = launch_unit();
      check(e, unit_failed_);
    }
  }

  // The steps of a run in segments: at most two segments queued, the host
  // waiting on the older one's event (one wait per segment, none per step),
  // reporting progress and growing segments while they take under ~25 ms.
  bool run_steps(int64_t budget, const ProgressFn& progress) {
    bool graphed = false;
    if (steps_ == StepMode::kGraph && budget >= 2 * kGraphSteps) graphed = ensure_graph();
    stats_.step_mode = steps_ == StepMode::kPersistent ? "persistent"
                       : graphed                       ? "graph"
                                                       : "launches";
    stats_.cuda_graph = graphed;
    stats_.segments = 0;
    using clock = std::chrono::steady_clock;
    struct Segment {
      cudaEvent_t done;
      int64_t end;
    };
    std::deque<Segment> queued;
    auto wait_front = [&]() {
      Segment sgm = queued.front();
      queued.pop_front();
      const cudaError_t e = cudaEventSynchronize(sgm.done);
      cudaEventDestroy(sgm.done);
      check(e, "k-center steps (cudaEventSynchronize)");
      return sgm.end;
    };
    int64_t seg = graphed ? kGraphSteps : 16;
    int64_t t = 0;
    bool stop = false;
    auto last = clock::now();
    try {
      while (t < budget && !stop) {
        const int64_t end = std::min(budget, t + seg);
        launch_segment(t, end, budget, graphed);
        ++stats_.segments;
        cudaEvent_t ev = nullptr;
        check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
        queued.push_back(Segment{ev, end});
        check(cudaEventRecord(ev, stream_), "cudaEventRecord");
        t = end;
        if (queued.size() >= 2) {
          const int64_t done = wait_front();
          const auto now = clock::now();
          const double ms = std::chrono::duration<double, std::milli>(now - last).count();
          last = now;
          if (ms < 25.0) seg *= 2;
          else if (ms > 100.0 && seg > (graphed ? kGraphSteps : 1)) seg /= 2;
          if (progress && !progress(done)) stop = true;
        }
      }
      while (!queued.empty()) wait_front();
    } catch (...) {
      for (const Segment& sgm : queued) {
        cudaEventSynchronize(sgm.done);
        cudaEventDestroy(sgm.done);
      }
      throw;
    }
    return !stop;
  }

  // After the steps of a run: the picks the device recorded (ctl->t) copied
  // to the host and counted. Every recorded pick is a center except the last
  // pick of a run that made all `budget` (it is left pending, as on the CPU).
  // Returns whether a step found no eligible row (ctl->error: the picks
  // before it are recorded, all of them centers).
  bool settle_run(int64_t budget, int64_t* picks, double* radii2, int64_t* recorded) {
    Ctl done{};
    check(cudaMemcpyAsync(&done, s_.ctl, sizeof done, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(ctl)");
    check(cudaStreamSynchronize(stream_), "k-center run (cudaStreamSynchronize)");
    const int64_t got = std::min<int64_t>(budget, std::max<long long>(0, done.t));
    if (got > 0) {
      check(cudaMemcpyAsync(picks, s_.picks, static_cast<size_t>(got) * sizeof(int64_t), cudaMemcpyDeviceToHost,
                            stream_),
            "cudaMemcpyAsync(picks)");
      check(cudaMemcpyAsync(radii2, s_.radii2, static_cast<size_t>(got) * sizeof(double), cudaMemcpyDeviceToHost,
                            stream_),
            "cudaMemcpyAsync(radii)");
      check(cudaStreamSynchronize(stream_), "k-center run (cudaStreamSynchronize)");
    }
    const int64_t pushed = got >= budget ? budget - 1 : got;
    k_ += pushed;
    stats_.counts.steps += pushed;
    stats_.counts.rows_visited += pushed * p_.n;
    *recorded = got;
    return done.error != 0;
  }

  // ---- modes -----------------------------------------------------------------

  void choose_modes(const StateOptions& o, bool coop) {
    smem_center_ = static_cast<size_t>(p_.c) * sizeof(A) <= kSmemCenterMax;
    prefetch_ = o.pass == PassVariant::kPrefetch || !smem_center_;
    steps_ = o.steps == StepMode::kAuto ? StepMode::kPersistent : o.steps;
    const int64_t groups = (p_.n + kLanes - 1) / kLanes;
    const int64_t work_blocks = (groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const size_t smem = center_smem();
    int occ = 0;
    if (!smem_center_)
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, pass_kernel<S, A, kLogits, false, true>, kThreads, 0),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    else if (prefetch_)
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, pass_kernel<S, A, kLogits, true, true>, kThreads, smem),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    else
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, pass_kernel<S, A, kLogits, true, false>, kThreads, smem),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    pass_grid_ = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>({work_blocks, int64_t(std::max(1, std::min(occ, kBlocksPerSm))) * sms_, kMaxGridBlocks})));
    if (steps_ == StepMode::kPersistent) {
      std::string why;
      int occ_step = 0;
      if (!smem_center_)
        why = "the persistent kernel keeps the center in shared memory (c * " + std::to_string(sizeof(A)) +
              " bytes <= 32 KiB)";
      else if (!coop) why = "the device does not support cooperative launches";
      else {
        if (prefetch_)
          check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ_step, step_kernel<S, A, kLogits, true>, kThreads, smem),
                "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
        else
          check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ_step, step_kernel<S, A, kLogits, false>, kThreads,
                                                              smem),
                "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
        if (occ_step < 1) why = "the step kernel does not fit on an SM";
      }
      if (!why.empty()) {
        stats_.note = why + ": graph steps instead";
        steps_ = StepMode::kGraph;
      } else {
        // All blocks resident (a cooperative launch requires it), at most
        // kBlocksPerSm per SM, no more than the rows need.
        persistent_grid_ = static_cast<int>(std::max<int64_t>(
            1, std::min<int64_t>({work_blocks, int64_t(std::min(occ_step, kBlocksPerSm)) * sms_, kMaxGridBlocks})));
      }
    }
  }

  int sms_ = 1;
  bool smem_center_ = true;  // the center fits in shared memory
  bool prefetch_ = true;     // the pass variant (see dist_batch)
  StepMode steps_ = StepMode::kGraph;
  int pass_grid_ = 1, persistent_grid_ = 0;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  int64_t graph_generation_ = -1;
  const char* unit_failed_ = "greedy step";
  CudaStats stats_;
};

template <typename S, typename A>
std::unique_ptr<State> make_typed_state(const void* x, const StateOptions& o, void* stream) {
  if (o.params.from_logits) return std::make_unique<TypedState<S, A, true>>(x, o, stream);
  return std::make_unique<TypedState<S, A, false>>(x, o, stream);
}

// One per storage type, each in its own translation unit (kcenter_<dtype>.cu).
std::unique_ptr<State> make_state_f16(const void* x, const StateOptions& o, void* stream);
std::unique_ptr<State> make_state_bf16(const void* x, const StateOptions& o, void* stream);
std::unique_ptr<State> make_state_f32(const void* x, const StateOptions& o, void* stream);
std::unique_ptr<State> make_state_f64(const void* x, const StateOptions& o, void* stream);

}  // namespace cuda
}  // namespace pcoreset
