# The CUDA module pcoreset._C_cuda; included by CMakeLists.txt when nvcc is
# found and csrc/cuda has sources (PCS_CUDA_SOURCES).
#
# The kernels build as a static library with nvcc (--fmad=false, so that the
# distances round exactly as the CPU kernel's with -ffp-contract=off), one
# translation unit per storage type (csrc/cuda/kcenter_<dtype>.cu); the
# pybind11 module is plain C++ and links them with the static CUDA runtime,
# so it runs next to PyTorch's own CUDA libraries without depending on them.
find_package(CUDAToolkit REQUIRED)
message(STATUS "pcoreset: CUDA sources ${PCS_CUDA_SOURCES}")

# "80;90" -> SASS for every architecture, plus PTX for the last one.
set(PCS_CUDA_ARCH_LIST "")
list(LENGTH PCORESET_CUDA_ARCHS _pcs_n_archs)
math(EXPR _pcs_last "${_pcs_n_archs} - 1")
set(_pcs_i 0)
foreach(_pcs_arch IN LISTS PCORESET_CUDA_ARCHS)
  if(_pcs_i EQUAL _pcs_last)
    list(APPEND PCS_CUDA_ARCH_LIST "${_pcs_arch}")
  else()
    list(APPEND PCS_CUDA_ARCH_LIST "${_pcs_arch}-real")
  endif()
  math(EXPR _pcs_i "${_pcs_i} + 1")
endforeach()
string(REPLACE ";" "," _pcs_archs_str "${PCORESET_CUDA_ARCHS}")

add_library(pcs_cuda_kernels STATIC ${PCS_CUDA_SOURCES})
set_target_properties(pcs_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${PCS_CUDA_ARCH_LIST}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_RUNTIME_LIBRARY Static
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(pcs_cuda_kernels PRIVATE csrc/include csrc/cuda)
target_compile_definitions(pcs_cuda_kernels PRIVATE "PCS_CUDA_ARCHS=\"${_pcs_archs_str}\"")
# ptxas warns on any register spill or local-memory use: the kernels are
# tuned to have none (see the register bounds in csrc/cuda/device_state.cuh), so a
# change that brings one back shows up in every build log, CI included.
target_compile_options(pcs_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false -O3 -lineinfo -Xcompiler=-fvisibility=hidden
  --ptxas-options=--warn-on-spills,--warn-on-local-memory-usage>)

pybind11_add_module(_C_cuda MODULE csrc/bind_cuda.cpp)
target_include_directories(_C_cuda PRIVATE csrc/include csrc/cuda)
target_compile_options(_C_cuda PRIVATE ${PCS_CXX_FLAGS})
target_link_libraries(_C_cuda PRIVATE pcs_cuda_kernels CUDA::cudart_static)
set_target_properties(_C_cuda PROPERTIES LINKER_LANGUAGE CXX CUDA_RUNTIME_LIBRARY Static)
