// The CUDA k-center state for float storage (float accumulation). One translation
// unit per storage type so that the kernels compile in parallel.
#include "state.cuh"

namespace pcoreset {
namespace cuda {

std::unique_ptr<State> make_state_f32(const void* x, const StateOptions& o, void* stream) {
  return make_typed_state<float, float>(x, o, stream);
}

}  // namespace cuda
}  // namespace pcoreset
