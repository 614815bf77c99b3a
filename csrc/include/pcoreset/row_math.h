// Row math shared by the CPU and the CUDA kernels.
//
// Everything that decides a pick lives here so the two devices cannot drift
// apart: how a stored value becomes a number (float16 / bfloat16 / float32 /
// float64), the softmax of a logit row, the summation order of a squared
// distance, the pruning test and the tie rule.
//
// Summation order: a distance is accumulated in kLanes independent partial
// sums (lane k takes the elements j with j % kLanes == k, in increasing j),
// then the lanes are folded by halving (k += k + offset for offset = 16, 8,
// 4, 2, 1). A CUDA warp computes exactly this with one lane per partial sum
// and __shfl_down_sync; the CPU computes it with a 32-wide array that the
// compiler vectorises. With FMA contraction disabled on both sides
// (-ffp-contract=off, nvcc --fmad=false) the two give bit-identical
// distances, so identical picks.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

#if defined(__CUDACC__)
#define PCS_HD __host__ __device__ __forceinline__
#else
#define PCS_HD inline
#endif

namespace pcoreset {

constexpr int kLanes = 32;

// Storage type tags. 16-bit types are carried as their raw bits so that the
// C++ side needs no compiler support for half precision.
struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

PCS_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

PCS_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// IEEE binary16 -> binary32 for finite values (inputs are checked finite
// before they reach a kernel). Exact, branch-free so that it vectorises, and
// never produces a float subnormal, so flush-to-zero modes cannot change it:
// a half subnormal m * 2^-24 is built as (2^-14 + m * 2^-24) - 2^-14, which is
// exact (Sterbenz). On the device the hardware conversion (one cvt.f32.f16,
// also exact for every finite half, subnormals included) gives the same bits.
PCS_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = static_cast<uint32_t>(h & 0x7FFFu) << 13;
  const float normal = bits_to_float(em + 0x38000000u);
  const float sub = bits_to_float(em | 0x38800000u) - 6.103515625e-05f;
  const float mag = (h & 0x7C00u) ? normal : sub;
  return bits_to_float(float_to_bits(mag) | sign);
#endif
}

PCS_HD float bf16_bits_to_float(uint16_t h) {
  return bits_to_float(static_cast<uint32_t>(h) << 16);
}

// load<S, A>(p): one stored value as the accumulation type A.
template <typename S, typename A> struct Load;
template <typename A> struct Load<float, A> {
  PCS_HD static A get(const float* p) { return static_cast<A>(*p); }
};
template <typename A> struct Load<double, A> {
  PCS_HD static A get(const double* p) { return static_cast<A>(*p); }
};
template <typename A> struct Load<f16_t, A> {
  PCS_HD static A get(const f16_t* p) { return static_cast<A>(half_bits_to_float(p->bits)); }
};
template <typename A> struct Load<bf16_t, A> {
  PCS_HD static A get(const bf16_t* p) { return static_cast<A>(bf16_bits_to_float(p->bits)); }
};

template <typename S> struct AccumOf { using type = float; };
template <> struct AccumOf<double> { using type = double; };

PCS_HD float exp_acc(float v) { return expf(v); }
PCS_HD double exp_acc(double v) { return exp(v); }

// Softmax parameters of one logit row: p_j = exp((x_j - row_max) * inv_t) * inv_sum.
template <typename A> struct SoftmaxRow {
  A row_max;
  A inv_sum;
};

// The value at column j of a row as the kernel sees it: the stored value, or
// its softmax probability when the row holds logits. Both kernels (and the
// center vectors they build) go through this one function.
// Probability of one logit v of a row with softmax parameters sm.
template <typename A> PCS_HD A logit_to_prob(A v, SoftmaxRow<A> sm, A inv_t) {
  return exp_acc((v - sm.row_max) * inv_t) * sm.inv_sum;
}

template <typename S, typename A>
PCS_HD A row_value(const S* row, int64_t j, bool from_logits, SoftmaxRow<A> sm, A inv_t) {
  const A v = Load<S, A>::get(row + j);
  if (!from_logits) return v;
  return logit_to_prob(v, sm, inv_t);
}

// The same fold when only the first `used` lanes can be non-zero (rows
// shorter than kLanes): adding a zero lane is exact, so folding the first p
// lanes (p the power of two >= used) gives the bits of the full fold.
template <typename A> PCS_HD A fold_first_lanes(A* lanes, int used) {
  int p = 1;
  while (p < used) p <<= 1;
  for (int k = used; k < p; ++k) lanes[k] = A(0);
  for (int offset = p / 2; offset > 0; offset /= 2) {
    for (int k = 0; k < offset; ++k) lanes[k] = lanes[k] + lanes[k + offset];
  }
  return lanes[0];
}

// Fold kLanes partial sums by halving, the order a warp's shuffle-down takes.
template <typename A> PCS_HD A fold_lanes(A* lanes) {
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    for (int k = 0; k < offset; ++k) lanes[k] = lanes[k] + lanes[k + offset];
  }
  return lanes[0];
}

// Squared L2 distance between x[row] (stored, possibly logits) and a center
// vector already expanded into the accumulation type. Sequential reference
// of the lane order; the CPU kernel uses a vectorised copy of this loop with
// the same order (see csrc/cpu/distance.h), tests compare the two.
template <typename S, typename A>
PCS_HD A sq_dist_lanes(const S* row, const A* center, int64_t c, bool from_logits,
                       SoftmaxRow<A> sm, A inv_t) {
  A lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
  for (int64_t j = 0; j < c; ++j) {
    const A d = row_value<S, A>(row, j, from_logits, sm, inv_t) - center[j];
    lanes[j % kLanes] = lanes[j % kLanes] + d * d;
  }
  return fold_lanes(lanes);
}

// Pruning (triangle inequality). A row i with nearest center a at squared
// distance m = mind[i] cannot come strictly closer to a new center n when
// d(a, n) >= 2 * sqrt(m), because d(i, n) >= d(a, n) - d(i, a) >= sqrt(m).
// In squared terms: dcc2 >= 4 * m. The factor kPruneSlack keeps the test on
// the safe side of rounding in the computed distances, so pruning never
// removes an update that the dense pass would have made.
template <typename A> struct PruneSlack;
template <> struct PruneSlack<float> { static constexpr float value = 4.0f * (1.0f + 1e-3f); };
template <> struct PruneSlack<double> { static constexpr double value = 4.0 * (1.0 + 1e-9); };

// A bound that overflowed to +inf proves nothing: squared distances of rows
// whose values are near the square root of the largest finite value
// overflow, and inf - inf has no sign. A row whose running minimum is
// infinite (or so large that the slack overflows) is never skipped, and a
// center whose reach is infinite is always visited (finite_bound false).
template <typename A> struct MaxFinite;
template <> struct MaxFinite<float> { static constexpr float value = 3.40282347e+38f; };
template <> struct MaxFinite<double> { static constexpr double value = 1.7976931348623157e+308; };
template <typename A> PCS_HD bool finite_bound(A bound) { return bound <= MaxFinite<A>::value; }

// The slack is relative, which holds while the squared distances are
// normal numbers. Below, each square and sum rounds to a multiple of the
// smallest subnormal (2^-149 in float32), an absolute error that a relative
// slack does not cover: rows whose squared distances are that small (a
// confident model's near-one-hot rows differing only in values near 1e-20)
// would be skipped although they move. PruneFloor adds an absolute term far
// above that error (it covers rows of up to 2^40 values) and far below any
// squared distance that pruning saves work on.
template <typename A> struct PruneFloor;
template <> struct PruneFloor<float> { static constexpr float value = 0x1p-100f; };
template <> struct PruneFloor<double> { static constexpr double value = 0x1p-960; };

// A row or cell whose running minimum (radius) is mind2 cannot change when
// its center is at computed squared distance >= prune_bound(mind2) from the
// new center. Monotone in mind2 (the cells' suffix search relies on it).
template <typename A> PCS_HD A prune_bound(A mind2) { return PruneSlack<A>::value * mind2 + PruneFloor<A>::value; }

template <typename A> PCS_HD bool can_skip_row(A dcc2, A mind2) {
  const A bound = prune_bound(mind2);
  return dcc2 >= bound && finite_bound(bound);
}

// Running minimum of a row that was labeled, picked or excluded: negative, so
// one load tells a pass that the row is not eligible (and the pruning test,
// dcc2 >= 4 * mind, always skips it).
template <typename A> PCS_HD A taken_mind() { return A(-1); }
template <typename A> PCS_HD bool is_eligible(A mind2) { return mind2 >= A(0); }

// Refining a row's nearest center among candidates: center `a` at squared
// distance d replaces the current (best, best_center) when strictly closer,
// or equally close with a lower center index.
// No center yet (best_center < 0): any, even at +inf.
template <typename A> PCS_HD bool closer_center(A d, int64_t a, A best, int64_t best_center) {
  return best_center < 0 || d < best || (d == best && a < best_center);
}

// Tie rule: the larger distance wins; on equal distances the lower row index.
template <typename A> PCS_HD bool better(A d1, int64_t i1, A d2, int64_t i2) {
  return d1 > d2 || (d1 == d2 && i1 < i2);
}

// Packed argmax key for float distances: the distance's bits (order-preserving
// for non-negative floats) above the inverted row index, so one unsigned
// 64-bit max gives the farthest row and, among equals, the lowest index. Key 0
// means "no eligible row" (a row with distance 0 at index < 2^32 - 1 has a
// positive key). Requires n < 2^32 - 1.
PCS_HD uint64_t pack_key(float dist2, uint32_t row) {
  return (static_cast<uint64_t>(float_to_bits(dist2)) << 32) |
         static_cast<uint64_t>(0xFFFFFFFFu - row);
}
PCS_HD uint32_t key_row(uint64_t key) { return 0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFu); }
PCS_HD float key_dist2(uint64_t key) { return bits_to_float(static_cast<uint32_t>(key >> 32)); }

}  // namespace pcoreset
