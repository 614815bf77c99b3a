// Squared distances of the CPU kernel: vectorisable copies of
// sq_dist_lanes (row_math.h) with the same lane assignment and fold, so the
// same bits, plus an early exit once a partial sum proves the row cannot come
// closer. Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "pcoreset/kcenter.h"
#include "pcoreset/row_math.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#ifndef PCS_ISA
#define PCS_ISA baseline
#endif

namespace pcoreset {
namespace PCS_ISA {
namespace {

// Early exit is tested every kExitEvery + 1 blocks of kLanes values (64):
// most rows a step computes stay with their center (98% on clustered pools),
// and a partial sum past the stop value ends them early.
constexpr int kExitEvery = 1;

// Early exit: a partial sum of non-negative terms that already exceeds the
// stop value by this margin cannot fold (in the lane order) to less than it.
template <typename A> struct ExitSlack;
template <> struct ExitSlack<float> { static constexpr float value = 1.0f + 1e-3f; };
template <> struct ExitSlack<double> { static constexpr double value = 1.0 + 1e-9; };

// A stored row (possibly logits) against a center in the accumulation type.
// With stop >= 0 the loop may return early with some value >= stop whenever
// the full sum would be >= stop.
template <typename S, typename A, bool kLogits>
A sq_dist_row(const S* row, const A* center, int64_t c, SoftmaxRow<A> sm, A inv_t, A stop) {
  if (c < kLanes) {  // short rows: one term per lane, the same fold (fold_first_lanes)
    A lanes[kLanes];
    for (int k = 0; k < c; ++k) {
      const A d = row_value<S, A>(row, k, kLogits, sm, inv_t) - center[k];
      lanes[k] = d * d;  // = 0 + d * d exactly
    }
    return fold_first_lanes(lanes, static_cast<int>(c));
  }
  A lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
  int64_t j = 0;
  const bool early = stop >= A(0) && stop < std::numeric_limits<A>::infinity();
  const A stop_slack = stop * ExitSlack<A>::value;
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A d = row_value<S, A>(row, j + k, kLogits, sm, inv_t) - center[j + k];
      lanes[k] = lanes[k] + d * d;
    }
    if (early && (++blocks & kExitEvery) == 0) {
      A partial = A(0);
      for (int k = 0; k < kLanes; ++k) partial += lanes[k];
      if (partial > stop_slack) return partial;
    }
  }
  for (int k = 0; j + k < c; ++k) {
    const A d = row_value<S, A>(row, j + k, kLogits, sm, inv_t) - center[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}

#if defined(__AVX2__) && defined(__F16C__)
// float16 rows in the AVX2 + F16C build: the compiler does not turn the
// portable bit conversion into vcvtph2ps, so spell it out. Same lanes in the
// same order (vector v holds lanes 8v..8v+7), a separate multiply and add as
// in the generic loop: the same bits as sq_dist_lanes.
template <>
float sq_dist_row<f16_t, float, false>(const f16_t* row, const float* center, int64_t c,
                                       SoftmaxRow<float> sm, float inv_t, float stop) {
  (void)sm;
  (void)inv_t;
  __m256 acc[kLanes / 8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const bool early = stop >= 0.0f && stop < std::numeric_limits<float>::infinity();
  const float stop_slack = stop * ExitSlack<float>::value;
  int64_t j = 0;
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int v = 0; v < kLanes / 8; ++v) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 8 * v));
      const __m256 d = _mm256_sub_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(center + j + 8 * v));
      acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(d, d));
    }
    if (early && (++blocks & kExitEvery) == 0) {
      alignas(32) float part[8];
      _mm256_store_ps(part, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
      float partial = 0.0f;
      for (float p : part) partial += p;
      if (partial > stop_slack) return partial;
    }
  }
  alignas(32) float lanes[kLanes];
  for (int v = 0; v < kLanes / 8; ++v) _mm256_store_ps(lanes + 8 * v, acc[v]);
  for (int k = 0; j + k < c; ++k) {
    const float d = half_bits_to_float(row[j + k].bits) - center[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}
#endif

// A row's stored values as the accumulation type (no softmax): what
// row_value gives for every j, in one branch-free loop that vectorises; the
// AVX2 + F16C build converts float16 with vcvtph2ps (exact for every finite
// half, subnormals included, as half_bits_to_float).
template <typename S, typename A> inline void load_row(const S* row, int64_t c, A* out) {
  for (int64_t j = 0; j < c; ++j) out[j] = Load<S, A>::get(row + j);
}
#if defined(__AVX2__) && defined(__F16C__)
template <> inline void load_row<f16_t, float>(const f16_t* row, int64_t c, float* out) {
  int64_t j = 0;
  for (; j + 8 <= c; j += 8)
    _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))));
  for (; j < c; ++j) out[j] = Load<f16_t, float>::get(row + j);
}
#endif

// Two vectors already in the accumulation type (centers, values kept in the
// cells); the same stop rule as sq_dist_row.
template <typename A>
A sq_dist_vec(const A* a, const A* b, int64_t c, A stop) {
  if (c < kLanes) {
    A lanes[kLanes];
    for (int k = 0; k < c; ++k) {
      const A d = a[k] - b[k];
      lanes[k] = d * d;
    }
    return fold_first_lanes(lanes, static_cast<int>(c));
  }
  A lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
  int64_t j = 0;
  const bool early = stop >= A(0) && stop < std::numeric_limits<A>::infinity();
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A d = a[j + k] - b[j + k];
      lanes[k] = lanes[k] + d * d;
    }
    if (early && (++blocks & kExitEvery) == 0) {
      A partial = A(0);
      for (int k = 0; k < kLanes; ++k) partial += lanes[k];
      if (partial > stop * ExitSlack<A>::value) return partial;
    }
  }
  for (int k = 0; j + k < c; ++k) {
    const A d = a[j + k] - b[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}

// Squared distance of two short vectors (C = kC < kLanes), unrolled at
// compile time: one term per lane and the fold of fold_first_lanes, so the
// same bits as sq_dist_vec and sq_dist_row.
template <int kP, typename A> __attribute__((always_inline)) inline A fold_pow2(const A* l) {
  if constexpr (kP == 1) {
    return l[0];
  } else {
    A h[kP / 2];
    for (int k = 0; k < kP / 2; ++k) h[k] = l[k] + l[k + kP / 2];
    return fold_pow2<kP / 2, A>(h);
  }
}

constexpr int pow2_at_least(int c) { return c <= 1 ? 1 : 2 * pow2_at_least((c + 1) / 2); }

// Forced inline: a call per 3-D row cost as much as the distance.
template <int kC, typename A> __attribute__((always_inline)) inline A sq_dist_small(const A* a, const A* b) {
  constexpr int kP = pow2_at_least(kC);
  A l[kP];
  for (int k = 0; k < kC; ++k) {
    const A d = a[k] - b[k];
    l[k] = d * d;
  }
  for (int k = kC; k < kP; ++k) l[k] = A(0);
  return fold_pow2<kP, A>(l);
}

// Squared distance between two center vectors (unrolled for short rows; the
// same bits either way).
template <typename A> __attribute__((always_inline)) inline A center_dist2(const A* a, const A* b, int64_t c, A stop) {
  switch (c) {
    case 1: return sq_dist_small<1, A>(a, b);
    case 2: return sq_dist_small<2, A>(a, b);
    case 3: return sq_dist_small<3, A>(a, b);
    case 4: return sq_dist_small<4, A>(a, b);
    case 5: return sq_dist_small<5, A>(a, b);
    case 6: return sq_dist_small<6, A>(a, b);
    case 7: return sq_dist_small<7, A>(a, b);
    case 8: return sq_dist_small<8, A>(a, b);
    default: return sq_dist_vec(a, b, c, stop);
  }
}

// The farthest row seen so far, by the tie rule of row_math.h.
struct Best {
  double dist2 = -1.0;
  int64_t row = -1;
  void offer(double d, int64_t i) {
    if (row < 0 || better(d, i, dist2, row)) {
      dist2 = d;
      row = i;
    }
  }
};

// The threads' bests combined (the same rule).
inline StepResult combine(const std::vector<Best>& best) {
  Best all;
  for (const Best& b : best)
    if (b.row >= 0) all.offer(b.dist2, b.row);
  return StepResult{all.row, all.dist2};
}

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
