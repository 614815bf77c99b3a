// Run-time choice of the CPU kernel build: AVX2 + F16C when the processor has
// them and the extension was built with that variant, else baseline x86-64
// (or the only build, on other architectures).
#include <cstdlib>
#include <memory>
#include <string>

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

}  // namespace pcoreset
