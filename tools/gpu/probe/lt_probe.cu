// How src/backend/cuda/cuda_gemm_algo.cpp's tile table was measured (not part of the build):
// every cuBLASLt heuristic candidate (up to 8) for the 130m and 2.8b prefill GEMMs
// (K-concatenated fp16 operands, fp32 out) at 1,000 … 32,768 rows, timed (20 launches after 5),
// next to cublasGemmEx(CUBLAS_GEMM_DEFAULT) as the backend calls it. To redo it on another GPU:
//   nvcc -O2 -arch=sm_90 -o .gpupack-probe/lt_probe tools/gpu/probe/lt_probe.cu -lcublasLt -lcublas
//   ../shared/gpu-host/bundle.sh .gpupack-probe/.gpu .gpupack-probe/lt_probe
// and on the GPU host `cd .gpupack-probe/.gpu && source ./env.sh && ./lt_probe` (one line per
// candidate: its tile (cublasLtMatmulTile_t), split-K, waves, µs).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <vector>
#define CK(x) do { auto e_ = (x); if (e_ != 0) { std::printf("err %d at %d\n", int(e_), __LINE__); std::exit(1);} } while (0)
static int s_reps = 20;
int main() {
  struct S { const char* name; int M, N, K; };
  std::vector<S> shapes;
  const int Ms[] = {1000, 2000, 2001, 4096, 8192, 16384, 32768};
  const S base[] = {{"in130", 0, 3072, 1536}, {"x130", 0, 80, 3072}, {"dt130", 0, 1536, 96},
                    {"out130", 0, 768, 3072}, {"in2.8", 0, 10240, 5120}, {"x2.8", 0, 192, 10240},
                    {"dt2.8", 0, 5120, 320}, {"out2.8", 0, 2560, 10240}};
  for (const S& b : base)
    for (int m : Ms)
      if (!(b.N == 10240 && m > 16384)) shapes.push_back({b.name, m, b.N, b.K});
  cublasHandle_t h; CK(cublasCreate(&h));
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  size_t wsb = 64 << 20; void* ws; CK(cudaMalloc(&ws, wsb));
  half *A, *B; float* C;
  CK(cudaMalloc(&A, size_t(10240) * 10240 * 2)); CK(cudaMalloc(&B, size_t(32768) * 10240 * 2));
  CK(cudaMalloc(&C, size_t(16384) * 10240 * 4));
  CK(cudaMemset(A, 0x11, size_t(10240) * 10240 * 2)); CK(cudaMemset(B, 0x22, size_t(32768) * 10240 * 2));
  cudaStream_t st; CK(cudaStreamCreate(&st)); CK(cublasSetStream(h, st));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  auto timeit = [&](auto&& f) {
    for (int i = 0; i < 5; ++i) f();
    cudaEventRecord(e0, st);
    const int n = s_reps;
    for (int i = 0; i < n; ++i) f();
    cudaEventRecord(e1, st); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1); return ms * 1000 / n;
  };
  const float one = 1, zero = 0;
  for (auto s : shapes) {
    float tdef = timeit([&] {
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.N, s.M, s.K, &one, A, CUDA_R_16F, s.K, B,
                   CUDA_R_16F, s.K, &zero, C, CUDA_R_32F, s.N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    std::printf("%-8s M %5d N %4d K %4d  cublasGemmEx default %8.2f us\n", s.name, s.M, s.N, s.K, tdef);
    cublasLtMatmulDesc_t d; CK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, s.K, s.N, s.K));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, s.K, s.M, s.K));
    CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, s.N, s.M, s.N));
    cublasLtMatmulPreference_t pr; CK(cublasLtMatmulPreferenceCreate(&pr));
    CK(cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    cublasLtMatmulHeuristicResult_t res[24]; int n = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, d, la, lb, lc, lc, pr, 24, res, &n));
    for (int i = 0; i < n; ++i) {
      int id = -1, tile = -1, sk = -1, red = -1, stages = -1, cl = -1, swz = -1;
      size_t w;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &sk, sizeof sk, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl, &w);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &w);
      float t = timeit([&] {
        cublasLtMatmul(lt, d, &one, A, la, B, lb, &zero, C, lc, C, lc, &res[i].algo, ws, wsb, st);
      });
      std::printf("   #%2d id %3d tile %3d splitk %2d red %d stages %3d cluster %2d swz %d waves %6.3f ws %8zu  %8.2f us\n",
                  i, id, tile, sk, red, stages, cl, swz, res[i].wavesCount, res[i].workspaceSize, t);
    }
    cublasLtMatmulPreferenceDestroy(pr); cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc); cublasLtMatmulDescDestroy(d);
  }
  return 0;
}
