// What the two v7 prompt-scan kernels share (selective_scan_v7.cu: scan_v7_kernel and the
// dispatch; selective_scan_v7s.cu: scan_v7s_kernel, the specialised-warp form): the chunk
// geometry, the tensor maps of a launch and the sm_90 primitives (mbarriers, TMA copies).
// Internal to those two files.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include "selective_scan_common.cuh"

// TMA, mbarriers and bulk copies are sm_90 instructions: the kernel's device code exists for
// sm_90 and later only (an empty body elsewhere), and scan_v7_applies() turns v7 down on a device
// below compute capability 9.0, so the empty body never runs.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define DM_V7_DEVICE 1
#else
#define DM_V7_DEVICE 0
#endif

namespace dm::cuda::v7 {

using namespace scan;

constexpr int kSl = 8;        // time slices per warp (lanes = 8 slices × 4 state groups)
constexpr int kR = 8;         // tokens per slice
constexpr int kT = kSl * kR;  // tokens per chunk
constexpr int kBSL = 160;     // floats per B/C slice region: R + 1 rows of 16, 640 bytes
static_assert((kR + 1) * kN <= kBSL && (kBSL * 4) % 128 == 0, "slice regions 128-byte aligned");

struct V7Maps {
  CUtensorMap delta, u, z, B, C, y;
  CUtensorMap B3, C3;  // B, C as [slice][R + 1 rows][16] windows (overlapping), one box a chunk
  int use3d;           // whether B3 / C3 were encoded
};

// The tensor maps of a launch: [T][BW] boxes of delta, u, z, y (swizzled if swz), B and C as
// 2D per-slice boxes and, if t3d, the 3D slice windows. False if the driver cannot encode them.
bool encode_maps(V7Maps& m, const SelectiveScanParams& p, uint32_t BW, bool swz, bool t3d,
                 const float* u, const float* delta, const float* B, const float* C,
                 const float* z, float* y);

// The specialised-warp configurations (selective_scan_v7s.cu): launches configuration letter
// cfg; cudaErrorInvalidValue for a letter that is not one of them.
cudaError_t launch_scan_v7s(char cfg, const SelectiveScanParams& p, const float* u,
                            const float* delta, const void* A_log, const float* B, const float* C,
                            const void* D, const float* z, const void* dt_bias, float* ssm_state,
                            float* y, cudaStream_t s);

#if DM_V7_DEVICE  // sm_90 device code (and the host pass, which compiles none of it)
__device__ __forceinline__ uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Returns once the phase of this parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n\t.reg .pred p;\n"
      "V7_WAIT:\n\t"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
      "@!p bra V7_WAIT;\n\t}" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int x, int y,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, int x, int y,
                                            int z, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(z), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, int x, int y, uint32_t src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(x), "r"(y), "r"(src)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_read0() {
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_all0() {
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}
// Makes this thread's shared-memory stores visible to the TMA (async proxy).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
#endif

}  // namespace dm::cuda::v7
