// Tile choices for the tensor-core GEMMs where cuBLAS's own pick was measured to be slow.
//
// cublasGemmEx(CUBLAS_GEMM_DEFAULT) takes the first algorithm of cuBLAS's heuristic. On an H100
// the heuristic's list holds, for some of the model's GEMM shapes, a tile that runs 7-25% faster
// than its first entry (bench/results/h100_session9_lead_2026-11-27.md, call 2: every
// candidate of every 130m / 2.8b prefill GEMM timed at 1,000 … 32,768 rows). GemmAlgoTable keeps
// those measured exceptions: a shape (N, K, a range of M) and the tiles to prefer, in order. A
// GEMM that matches runs through cuBLASLt with the first preferred tile the heuristic offers
// for it; everything else (and every GPU the table was not measured on) runs as before.
//
// Deterministic: the choice depends on the shape, the device and the library, never on a
// timing taken at run time, so the same prompt gives the same bits on every run.
// DM_CUDA_GEMM_TABLE=0 (read per call) turns the table off.
#pragma once

#include <array>
#include <cstdint>
#include <map>

#include <cublasLt.h>
#include <cuda_runtime.h>

namespace dm::cuda_util {

// y (M×N, fp32, row stride ldy) = x (M×K, ld ldx) · Wᵀ (W: N×K, ld ldw), fp16 or bf16 operands,
// fp32 accumulation; beta 0 or 1 (the second half of a two-GEMM hi + lo sum).
struct LtGemm {
  uint32_t M, N, K;
  const void* w;
  uint32_t ldw;
  const void* x;
  uint32_t ldx;
  float* y;
  uint32_t ldy;
  cudaDataType type;  // CUDA_R_16F or CUDA_R_16BF
  float beta;
};

class GemmAlgoTable {
 public:
  // device: the GPU the backend runs on; workspace: cuBLAS's fixed workspace (same stream).
  GemmAlgoTable(int device, void* workspace, size_t workspace_bytes);
  ~GemmAlgoTable();
  GemmAlgoTable(const GemmAlgoTable&) = delete;
  GemmAlgoTable& operator=(const GemmAlgoTable&) = delete;

  // Runs g on `stream` and returns true where the table has a tile for its shape that cuBLASLt
  // offers; false (nothing enqueued) otherwise: the caller runs cublasGemmEx.
  bool run(const LtGemm& g, cudaStream_t stream);

 private:
  struct Plan;  // a shape's descriptors and chosen algorithm (or none)
  const Plan& plan(const LtGemm& g);

  cublasLtHandle_t lt_ = nullptr;
  bool measured_device_ = false;  // the table's GPU (compute capability 9.0, 132 SMs)
  void* workspace_;
  size_t workspace_bytes_;
  // By M, N, K, the three lds, the operand type and the pointers' alignments (which decide the
  // algorithms cuBLASLt may offer).
  std::map<std::array<uint32_t, 8>, Plan*> plans_;
};

}  // namespace dm::cuda_util
