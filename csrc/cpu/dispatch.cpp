// Run-time choice of the CPU kernel build: AVX2 + F16C when the processor has
// them and the extension was built with that variant, else baseline x86-64
// (or the only build, on other architectures).
#include <cstdlib>
#include <memory>
#include <string>

#include "pcoreset/certify.h"
#include "pcoreset/kcenter.h"

namespace pcoreset {
namespace baseline {
std::unique_ptr<KCenterState> make_state(const void*, const std::string&, const KCenterParams&);
}
#ifdef PCORESET_HAVE_AVX2
namespace avx2 {
std::unique_ptr<KCenterState> make_state(const void*, const std::string&, const KCenterParams&);
}
#endif

// PCORESET_SIMD=baseline forces the portable build (tests compare the two).
const char* cpu_simd_level() {
#ifdef PCORESET_HAVE_AVX2
  const char* forced = std::getenv("PCORESET_SIMD");
  const bool baseline_only = forced != nullptr && std::string(forced) == "baseline";
  __builtin_cpu_init();
  if (!baseline_only && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) return "avx2+f16c";
#endif
#if defined(__x86_64__)
  return "sse2";
#elif defined(__aarch64__)
  return "neon";
#else
  return "scalar";
#endif
}

std::unique_ptr<KCenterState> make_cpu_state(const void* data, const std::string& dtype,
                                             const KCenterParams& params) {
#ifdef PCORESET_HAVE_AVX2
  if (std::string(cpu_simd_level()) == "avx2+f16c") return avx2::make_state(data, dtype, params);
#endif
  return baseline::make_state(data, dtype, params);
}

namespace {
bool use_avx2() {
#ifdef PCORESET_HAVE_AVX2
  return std::string(cpu_simd_level()) == "avx2+f16c";
#else
  return false;
#endif
}
}  // namespace

#ifdef PCORESET_HAVE_AVX2
#define PCORESET_PICK(fn, ...) (use_avx2() ? avx2::fn(__VA_ARGS__) : baseline::fn(__VA_ARGS__))
#else
#define PCORESET_PICK(fn, ...) baseline::fn(__VA_ARGS__)
#endif

template <typename A>
void certify_tile(const A* g, const A* nx2, const A* ny2, const double* nx, const double* ny, int64_t rows,
                  int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts,
                  std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols, int num_threads) {
  PCORESET_PICK(certify_tile<A>, g, nx2, ny2, nx, ny, rows, cols, b, cand, counts, over_rows, over_cols,
                num_threads);
}

template <typename A>
void certify_tile_proj(const A* x, const A* y, int64_t c, const A* nx2, const A* ny2, const double* nx,
                       const double* ny, int64_t rows, int64_t cols, const ProjBounds& p, const CertifyBounds& b,
                       int64_t* cand, int64_t* counts, std::vector<int64_t>* over_rows,
                       std::vector<int64_t>* over_cols) {
  PCORESET_PICK(certify_tile_proj<A>, x, y, c, nx2, ny2, nx, ny, rows, cols, p, b, cand, counts, over_rows,
                over_cols);
}

template <typename A>
void assign_pivots(const A* x, const A* g, const A* r, const A* rn2, int64_t rows, int64_t p, int64_t c,
                   int32_t* pivot, A* s2) {
  PCORESET_PICK(assign_pivots<A>, x, g, r, rn2, rows, p, c, pivot, s2);
}

template <typename A>
void row_norms(const A* a, int64_t rows, int64_t c, double* norm, A* norm2) {
  PCORESET_PICK(row_norms<A>, a, rows, c, norm, norm2);
}
void half_to_float(const uint16_t* in, int64_t n, float* out) { PCORESET_PICK(half_to_float, in, n, out); }
void proj_bound_terms(const ProjBounds& p, int64_t rows, int64_t cols, float* v, double* off) {
  PCORESET_PICK(proj_bound_terms, p, rows, cols, v, off);
}
#undef PCORESET_PICK

PCORESET_CERTIFY_INSTANTIATE(float)
PCORESET_CERTIFY_INSTANTIATE(double)

}  // namespace pcoreset
