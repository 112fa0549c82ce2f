# The CUDA backend: kernels in cuda/*.cu (one per Backend method) built by nvcc into their own
# static library, the host side (stream, buffers, cuBLAS) in src/backend/cuda/*.cpp compiled into
# dm. Included from CMakeLists.txt after the dm target exists; with DM_CUDA ON, enable_language(CUDA)
# has run and CMAKE_CUDA_ARCHITECTURES is set ("80;90" unless overridden).

# Without it, the vendor-free CUDA-only API (cuda_graph.h, cuda_timing.h) links to stubs that
# throw, so tests and benchmarks that use it build everywhere and skip at run time.
if(NOT DM_CUDA)
  target_sources(dm PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cuda/cuda_absent.cpp)
  return()
endif()

find_package(CUDAToolkit REQUIRED)

file(GLOB DM_CUDA_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/*.cu)
file(GLOB DM_CUDA_HOST CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cuda/*.cpp)
list(FILTER DM_CUDA_HOST EXCLUDE REGEX "cuda_absent\\.cpp$")

add_library(dm_cuda_kernels STATIC ${DM_CUDA_KERNELS})
# The directory's compile options are gcc flags (warnings, sanitizers) that nvcc does not take;
# the kernels get their own set. Sanitizer builds instrument only host code.
set_property(TARGET dm_cuda_kernels PROPERTY COMPILE_OPTIONS
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall> $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
set_target_properties(dm_cuda_kernels PROPERTIES
  CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON POSITION_INDEPENDENT_CODE ON
  CUDA_RUNTIME_LIBRARY Shared)
target_include_directories(dm_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(dm_cuda_kernels PUBLIC CUDA::cudart)

target_sources(dm PRIVATE ${DM_CUDA_HOST})
target_compile_definitions(dm PUBLIC DM_HAVE_CUDA)
target_link_libraries(dm PUBLIC dm_cuda_kernels CUDA::cudart CUDA::cublas CUDA::cublasLt)
