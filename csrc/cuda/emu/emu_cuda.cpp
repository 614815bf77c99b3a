// The host emulation's scheduler and runtime (see emu_cuda.h).
#include "emu_cuda.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#if !defined(__x86_64__)
#error "the CUDA host emulation needs x86-64 (its fibers switch stacks in assembly)"
#endif

// switch_stack(save, load): saves the callee-saved registers on the current
// stack, stores the stack pointer in *save, continues on stack `load`.
extern "C" void pcs_emu_switch_stack(void** save, void* load);
asm(R"(
.text
.globl pcs_emu_switch_stack
.type pcs_emu_switch_stack,@function
pcs_emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size pcs_emu_switch_stack, .-pcs_emu_switch_stack
)");

namespace pcs_emu {
namespace {

constexpr size_t kStackBytes = 128 << 10;  // kernels do not recurse; -O1 frames are small

enum Wait { kNone, kWarp, kBlock, kGrid };

struct Fiber {
  unsigned tid = 0;
  void* sp = nullptr;
  std::unique_ptr<char[]> stack;
  bool done = false;
  Wait wait = kNone;
  unsigned wait_gen = 0;
};

struct GridSync {
  std::mutex m;
  std::condition_variable cv;
  unsigned count = 0, gen = 0, blocks = 0;
  bool broken = false;  // a block failed: nobody waits for it
  bool arrive_and_wait() {
    std::unique_lock<std::mutex> lock(m);
    const unsigned g = gen;
    if (++count == blocks) {
      count = 0;
      ++gen;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return gen != g || broken; });
    }
    return !broken;
  }
  void break_all() {
    std::lock_guard<std::mutex> lock(m);
    broken = true;
    cv.notify_all();
  }
};

struct Block {
  std::vector<Fiber> fibers;
  void* sched_sp = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<unsigned> warp_arrived, warp_gen;
  unsigned block_arrived = 0, block_gen = 0;
  std::vector<uint64_t> slots;  // warps x 2 parities x 32 lanes
  std::vector<unsigned char> smem;
  GridSync* grid = nullptr;
};

thread_local Block* blk = nullptr;
thread_local Fiber* cur = nullptr;

void yield_to_scheduler() { pcs_emu_switch_stack(&cur->sp, blk->sched_sp); }

[[noreturn]] void fiber_main() {
  (*blk->body)();
  cur->done = true;
  pcs_emu_switch_stack(&cur->sp, blk->sched_sp);
  std::abort();  // a finished fiber is never resumed
}

bool blocked(const Fiber& f) {
  switch (f.wait) {
    case kWarp: return blk->warp_gen[f.tid / 32] == f.wait_gen;
    case kBlock:
    case kGrid: return blk->block_gen == f.wait_gen;
    default: return false;
  }
}

void run_block(Block& b) {
  blk = &b;
  for (Fiber& f : b.fibers) {
    f.stack.reset(new char[kStackBytes]);
    // Stack top 16-aligned; the first switch "returns" into fiber_main with
    // the stack as after a call (rsp = 8 mod 16 at entry).
    auto top = reinterpret_cast<uintptr_t>(f.stack.get() + kStackBytes) & ~uintptr_t(15);
    auto* sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                         // fiber_main's return address (never used)
    *--sp = reinterpret_cast<void*>(&fiber_main);            // where the first switch returns to
    for (int k = 0; k < 6; ++k) *--sp = nullptr;             // rbp rbx r12 r13 r14 r15
    f.sp = sp;
  }
  size_t left = b.fibers.size();
  while (left) {
    bool ran = false;
    for (Fiber& f : b.fibers) {
      if (f.done || blocked(f)) continue;
      f.wait = kNone;
      cur = &f;
      pcs_emu_switch_stack(&b.sched_sp, f.sp);
      ran = true;
      if (f.done) --left;
    }
    if (!ran && left) {  // the waiting fibers are abandoned (their frames hold nothing to destroy)
      cur = nullptr;
      blk = nullptr;
      throw std::runtime_error("pcs_emu: deadlock in block " + std::to_string(block_idx.x) + ": " +
                               std::to_string(left) +
                               " threads wait at a barrier that the others never reach (a collective inside "
                               "divergent code?)");
    }
  }
  cur = nullptr;
  blk = nullptr;
}

}  // namespace

thread_local dim3 block_idx, block_dim, grid_dim;

dim3 thread_idx() { return dim3(cur ? cur->tid : 0); }

// PCS_EMU_COOPERATIVE_LIMIT=n: n more cooperative launches are accepted,
// counted from when the variable took this value; then they are refused.
bool cooperative_allowed() {
  static unsigned launched = 0;
  static std::string seen;
  const char* env = std::getenv("PCS_EMU_COOPERATIVE_LIMIT");
  const std::string limit = env ? env : "";
  if (limit != seen) {
    seen = limit;
    launched = 0;
  }
  if (!limit.empty() && launched >= static_cast<unsigned>(std::atoi(limit.c_str()))) return false;
  ++launched;
  return true;
}
// PCS_EMU_FAIL_LAUNCH=n: the n-th launch counted from when the variable
// took this value fails (1: the next one); the others run.
bool launch_allowed() {
  static unsigned launched = 0;
  static std::string seen;
  const char* env = std::getenv("PCS_EMU_FAIL_LAUNCH");
  const std::string which = env ? env : "";
  if (which != seen) {
    seen = which;
    launched = 0;
  }
  if (which.empty()) return true;
  return ++launched != static_cast<unsigned>(std::atoi(which.c_str()));
}
unsigned char* dynamic_smem() { return blk->smem.data(); }

int warp_parity() { return static_cast<int>(blk->warp_gen[cur->tid / 32] & 1u); }
uint64_t* warp_slot(int parity, int lane) {
  return &blk->slots[((cur->tid / 32) * 2 + static_cast<unsigned>(parity)) * 32 + static_cast<unsigned>(lane)];
}

void warp_barrier() {
  const unsigned w = cur->tid / 32;
  const unsigned width = std::min<unsigned>(32, block_dim.x - w * 32);
  if (++blk->warp_arrived[w] == width) {
    blk->warp_arrived[w] = 0;
    ++blk->warp_gen[w];
    return;
  }
  cur->wait = kWarp;
  cur->wait_gen = blk->warp_gen[w];
  yield_to_scheduler();
}

static void block_barrier_impl(bool grid) {
  if (++blk->block_arrived == block_dim.x) {
    blk->block_arrived = 0;
    // Every other fiber of this block is waiting: block the OS thread. If
    // another block failed, this block's fibers stay waiting for good and
    // the scheduler reports it.
    if (!grid || blk->grid->arrive_and_wait()) {
      ++blk->block_gen;
      return;
    }
  }
  cur->wait = grid ? kGrid : kBlock;
  cur->wait_gen = blk->block_gen;
  yield_to_scheduler();
}

void block_barrier() { block_barrier_impl(false); }

void grid_barrier() {
  if (!blk->grid) {
    std::fprintf(stderr, "pcs_emu: grid barrier in a kernel not launched cooperatively\n");
    std::abort();
  }
  block_barrier_impl(true);
}

void run_grid(const std::function<void()>& body, unsigned grid, unsigned block, size_t smem, bool cooperative) {
  GridSync sync;
  sync.blocks = grid;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(grid);
  threads.reserve(grid);
  for (unsigned b = 0; b < grid; ++b) {
    threads.emplace_back([&, b]() {
     try {
      block_idx = dim3(b);
      block_dim = dim3(block);
      grid_dim = dim3(grid);
      Block blk_state;
      blk_state.fibers.resize(block);
      for (unsigned t = 0; t < block; ++t) blk_state.fibers[t].tid = t;
      const unsigned warps = (block + 31) / 32;
      blk_state.warp_arrived.assign(warps, 0);
      blk_state.warp_gen.assign(warps, 0);
      blk_state.slots.assign(warps * 2 * 32, 0);
      blk_state.smem.assign(smem + 16, 0xFF);
      blk_state.body = &body;
      blk_state.grid = cooperative ? &sync : nullptr;
      run_block(blk_state);
     } catch (const std::exception& e) {
      errors[b] = e.what();
      sync.break_all();
     }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors)
    if (!e.empty()) throw std::runtime_error(e);  // reaches Python as a RuntimeError
}

}  // namespace pcs_emu

// ---- runtime API --------------------------------------------------------------------

namespace {
thread_local int g_device = 0;
cudaError_t g_last = cudaSuccess;
}  // namespace

void pcs_emu::set_last_error(cudaError_t e) { g_last = e; }

cudaError_t cudaGetDevice(int* d) {
  *d = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  g_device = d;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 2; break;
    case cudaDevAttrCooperativeLaunch: *v = 1; break;
    case cudaDevAttrMemoryPoolsSupported: *v = 1; break;
    default: *v = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new pcs_emu::Stream();
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new int(0);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  *p = std::aligned_alloc(256, rounded);
  if (!*p) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xFF, rounded);  // garbage: whatever is read before it is written shows up
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorCooperativeLaunchTooLarge: return "cudaErrorCooperativeLaunchTooLarge";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorEmulated";
  }
}
const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  s->capturing = true;
  s->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  *g = new pcs_emu::Graph{std::move(s->captured)};
  s->capturing = false;
  s->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  *exec = new pcs_emu::Graph(*g);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  for (const auto& launch : exec->launches) launch();
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
