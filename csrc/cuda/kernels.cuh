// CUDA k-center kernels: the whole GPU on one pool, no host sync per step.
//
// Device state (owned by the host class in state.cuh, laid out in
// device_state.cuh): running minimum mind[i] (negative: taken, i.e. labeled,
// picked or excluded), nearest center nearest[i], per-row softmax parameters
// for logits, the centers' values (k x c, accumulation type), a radius bound
// per center, center-to-center distances of the current step, the current
// center vector, argmax slots, and a control block (Ctl).
//
// Slot t holds the argmax that becomes pick t of a run (slot 0: the first
// pick, from the pool mean or the started state). Step t of a run:
//   - pick t is decoded from slot t and recorded; unless it is the run's
//     last, it becomes center base + t (values stored once, softmax applied
//     once) and is marked taken;
//   - dcc: d^2(c_a, c_new) for every center with rows (radius > 0), early
//     exit at the bound under which none of its rows can move;
//   - pass: every eligible row: per-row triangle test (8 bytes per row), the
//     surviving rows' distances in the shared lane order, update of
//     mind/nearest, argmax into slot t + 1 (packed 64-bit key + atomicMax for
//     float distances; per-block pairs folded by the last block to finish for
//     float64).
//
// Two ways to run the steps (step_kernels.cuh):
//   - step_kernel: one persistent cooperative kernel per segment of steps,
//     the phases separated by grid barriers, the center in every block's
//     shared memory. This is the default: two grid barriers per step replace
//     three dependent graph nodes, and prep's work runs in every block at once
//     (each block decodes the slot and expands the center itself), so no
//     block waits for another to finish it.
//   - prep_kernel, dcc_kernel, pass_kernel: three kernels per step, which
//     read the step number from ctl->t so that one captured CUDA graph of 32
//     steps serves every step (or plain launches). Used when a cooperative
//     launch is not possible and when the center does not fit in shared
//     memory.
//
// Files: device_state.cuh (constants, Ctl, Dev, the argmax), dist.cuh (the
// distances in the shared lane order), pass.cuh (the fused pass and dcc),
// start_kernels.cuh (the start, the mean, export/load), step_kernels.cuh
// (the steps).
#pragma once

#include "device_state.cuh"
#include "pass.cuh"
#include "start_kernels.cuh"
#include "step_kernels.cuh"
