# The CUDA module pcoreset._C_cuda; included by CMakeLists.txt when nvcc is
# found and csrc/cuda has sources. Filled in by the CUDA kernel.
message(STATUS "pcoreset: CUDA sources ${PCS_CUDA_SOURCES}")
