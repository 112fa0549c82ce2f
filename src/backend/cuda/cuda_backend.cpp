#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_gemm_algo.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_staging.h"
#include "backend/params.h"
#include "core/env.h"
#include "core/error.h"

namespace dm {

namespace cuda {

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a sticky-free error so the next call does not see it again
  fail("[cuda] ", what, ": ", cudaGetErrorString(err), " (", cudaGetErrorName(err), " at ", file,
       ":", line, ")");
}

void throw_cublas(cublasStatus_t st, const char* what, const char* file, int line) {
  fail("[cuda] ", what, ": ", cublasGetStatusString(st), " (at ", file, ":", line, ")");
}

}  // namespace cuda

class CudaRecordingImpl;

namespace {

// Recordings (Backend::record) and the buffers they address: a recording whose buffer is freed
// becomes invalid (the executor then records again). While a recording is made, dev() notes
// every buffer a kernel is given.
struct RecordingRegistry {
  std::mutex mu;
  std::set<CudaRecordingImpl*> live;
};
RecordingRegistry& registry() {
  static RecordingRegistry* r = new RecordingRegistry;  // never destroyed: buffers may outlive statics
  return *r;
}
thread_local std::set<const void*>* t_capture_uses = nullptr;

}  // namespace

namespace cuda_util {

std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

[[noreturn]] void out_of_memory(cudaError_t e, size_t bytes, const char* what) {
  cudaGetLastError();
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  cudaGetLastError();
  fail("[cuda] out of memory: ", what, " of ", mib(bytes), " failed (", cudaGetErrorString(e),
       "; ", mib(free_b), " free of ", mib(total_b), ")");
}

void check_launch(cudaError_t e, const char* kernel) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("[cuda] ", kernel, ": launch failed: ", cudaGetErrorString(e));
  }
}

CudaBuffer& dev(const Buffer& b, const char* what) {
  auto* cb = dynamic_cast<const CudaBuffer*>(&b);
  if (!cb) fail("[cuda] ", what, ": buffer was not allocated by the cuda backend");
  if (t_capture_uses) t_capture_uses->insert(cb);
  return const_cast<CudaBuffer&>(*cb);
}

void check_cublas_range(const GemmParams& p) {
  for (uint32_t v : {p.M, p.N, p.K, p.x_stride, p.w_stride, p.y_stride})
    if (v > uint32_t(INT_MAX)) fail("[cuda] gemm: size ", v, " exceeds cuBLAS's int range");
}

}  // namespace cuda_util

using namespace cuda_util;

namespace {

void check_range(const Buffer& b, size_t offset, size_t bytes, const char* op) {
  if (offset > b.bytes() || bytes > b.bytes() - offset)
    fail("[cuda] ", op, ": range [", offset, ", ", offset + bytes, ") exceeds the ", b.bytes(),
         "-byte buffer");
}

void require_device(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("[cuda] no CUDA device: ", cudaGetErrorString(e));
  }
  if (n == 0) fail("[cuda] no CUDA device: none was found");
  if (device < 0 || device >= n)
    fail("[cuda] device ", device, ": out of range (", n, " CUDA device", n == 1 ? "" : "s", ")");
}

std::string describe_device(int device) {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.totalGlobalMem >> 30) + " GiB)";
}

constexpr size_t kCublasWorkspace = size_t(32) << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Buffers

CudaBuffer::CudaBuffer(size_t bytes, int device) : Buffer(bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaSetDevice(device));
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e == cudaErrorMemoryAllocation) out_of_memory(e, bytes, "cudaMalloc");
  CUDA_CHECK(e);
}

void cuda_buffer_freed(const void* buf);  // below

CudaBuffer::~CudaBuffer() {
  cuda_buffer_freed(this);
  free_kcat_copies(*this);
  // cudaFree waits for the device, so queued work that still reads the buffer finishes first.
  if (ptr_) cudaFree(ptr_);
}

// ---------------------------------------------------------------------------------------------
// Backend

CudaBackend::CudaBackend(int device) : device_(device) {
  require_device(device);
  CUDA_CHECK(cudaSetDevice(device));
  device_name_ = describe_device(device);
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // A fixed workspace: cuBLAS then allocates nothing per call, which graph capture requires.
  const cudaError_t e = cudaMalloc(&cublas_workspace_, kCublasWorkspace);
  if (e == cudaErrorMemoryAllocation) out_of_memory(e, kCublasWorkspace, "cuBLAS workspace");
  CUDA_CHECK(e);
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspace));
  algo_table_ = std::make_unique<cuda_util::GemmAlgoTable>(device, cublas_workspace_,
                                                           kCublasWorkspace);
  CUDA_CHECK(cudaMalloc(&step_counter_, sizeof(unsigned)));
  CUDA_CHECK(cudaMemset(step_counter_, 0, sizeof(unsigned)));
  CUDA_CHECK(cudaMalloc(&argmax_scratch_, cuda::kArgmaxScratchBytes));
  CUDA_CHECK(cudaMemset(argmax_scratch_, 0, cuda::kArgmaxScratchBytes));
  CUDA_CHECK(cudaMalloc(&block_exchange_, cuda::kDecodeExchangeBytes));
  CUDA_CHECK(cudaMemset(block_exchange_, 0, cuda::kDecodeExchangeBytes));
  CUDA_CHECK(cudaMalloc(&xproj_partials_, cuda::kDecodePartialBytes));
  CUDA_CHECK(cudaMalloc(&norm_scale_, sizeof(float)));
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&err_host_), sizeof(cuda::DeviceErrorInfo),
                           cudaHostAllocMapped));
  std::memset(err_host_, 0, sizeof(*err_host_));
  staging_ = std::make_unique<cuda_util::PinnedStaging>();
  async_downloads_ = std::make_unique<cuda_util::PinnedAsyncDownloads>();
  CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&err_dev_), err_host_, 0));
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  kcat_budget_ = total_b / 8;
  split_gemm_ = env_choice("cuda", "DM_CUDA_FAST_GEMM", {"0", "1"}) == 0;
}

CudaBackend::~CudaBackend() {
  // No throwing here: errors on the way out are ignored. A backend destroyed during static
  // destruction may outlive the CUDA runtime; then everything is left to the process's end.
  if (stream_) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaErrorCudartUnloading || q == cudaErrorContextIsDestroyed ||
        q == cudaErrorInvalidResourceHandle) {
      (void)algo_table_.release();  // left to the process's end with the rest
      (void)staging_.release();
      (void)async_downloads_.release();
      return;
    }
  }
  if (capturing_) {
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
  }
  if (stream_) cudaStreamSynchronize(stream_);
  if (scratch_) cudaFree(scratch_);
  if (scan_scratch_) cudaFree(scan_scratch_);
  if (step_counter_) cudaFree(step_counter_);
  if (argmax_scratch_) cudaFree(argmax_scratch_);
  if (block_exchange_) cudaFree(block_exchange_);
  if (xproj_partials_) cudaFree(xproj_partials_);
  if (norm_scale_) cudaFree(norm_scale_);
  algo_table_.reset();
  if (cublas_) cublasDestroy(cublas_);
  if (cublas_workspace_) cudaFree(cublas_workspace_);
  staging_.reset();
  async_downloads_.reset();
  if (err_host_) cudaFreeHost(err_host_);
  if (stream_) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

void CudaBackend::not_capturing(const char* op) const {
  if (capturing_)
    fail("[cuda] ", op, ": not allowed while a graph is being recorded (write inputs before "
         "replay, read outputs after)");
}

void CudaBackend::check_device_errors() {
  cuda::DeviceErrorInfo e;
  std::memcpy(&e, err_host_, sizeof(e));
  if (e.code == 0) return;
  std::memset(err_host_, 0, sizeof(*err_host_));
  if (e.code == cuda::kErrGatherIndex)
    fail("[gather_rows] idx[", e.a, "] = ", e.b, " is outside [0, ", e.c,
         ") (src rows); that row of dst was not written");
  fail("[cuda] a kernel reported error code ", e.code);
}

std::unique_ptr<Buffer> CudaBackend::alloc(size_t bytes) {
  not_capturing("alloc");
  return std::make_unique<CudaBuffer>(bytes, device_);
}

std::unique_ptr<Buffer> CudaBackend::upload_constant(const void* host, size_t bytes) {
  std::unique_ptr<Buffer> b = Backend::upload_constant(host, bytes);
  dev(*b, "upload_constant").constant = true;
  return b;
}

void CudaBackend::upload(Buffer& dst, size_t offset, const void* src, size_t bytes) {
  not_capturing("upload");
  check_range(dst, offset, bytes, "upload");
  if (bytes == 0) return;
  free_kcat_copies(dev(dst, "upload"));  // derived from the old contents
  char* d = static_cast<char*>(dev(dst, "upload").ptr()) + offset;
  if (staging_->upload(d, src, bytes, stream_)) return;
  // From pageable memory this returns once `src` has been staged: the caller may reuse it.
  CUDA_CHECK(cudaMemcpyAsync(d, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::download(const Buffer& src, size_t offset, void* dst, size_t bytes) {
  not_capturing("download");
  check_range(src, offset, bytes, "download");
  const char* s = static_cast<const char*>(dev(src, "download").ptr()) + offset;
  if (!staging_->download(dst, s, bytes, stream_)) {
    if (bytes > 0) CUDA_CHECK(cudaMemcpyAsync(dst, s, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  check_device_errors();
}

uint64_t CudaBackend::download_start(const Buffer& src, size_t offset, size_t bytes) {
  not_capturing("download_start");
  check_range(src, offset, bytes, "download_start");
  if (bytes > kAsyncDownloadMax)
    fail("[cuda] download_start: ", bytes, " bytes, at most ", kAsyncDownloadMax);
  const char* s = static_cast<const char*>(dev(src, "download_start").ptr()) + offset;
  uint64_t ticket = 0;
  if (async_downloads_->start(&ticket, s, bytes, stream_)) return ticket;
  return Backend::download_start(src, offset, bytes);  // at once, from pageable memory
}

void CudaBackend::download_wait(uint64_t ticket, void* dst) {
  if (!async_downloads_->owns(ticket)) return Backend::download_wait(ticket, dst);
  async_downloads_->wait(ticket, dst);
  check_device_errors();
}

void CudaBackend::set_profiling(bool on) {
  not_capturing("set_profiling");
  timer_ = on ? std::make_unique<cuda_util::CallTimer>(stream_) : nullptr;
}

std::vector<ProfileRow> CudaBackend::profile() {
  not_capturing("profile");
  std::vector<ProfileRow> rows = timer_ ? timer_->rows() : std::vector<ProfileRow>{};
  check_device_errors();
  return rows;
}

void CudaBackend::synchronize() {
  not_capturing("synchronize");
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  check_device_errors();
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight,
                           const Tensor& y, float eps) {
  const TimedCall timed(*this, "rms_norm");
  const RmsNormParams p = make_rms_norm_params(x, residual, weight, y, eps);
  check_launch(cuda::launch_rms_norm(p, dptr(x, "rms_norm x"), dptr(residual, "rms_norm residual"),
                                     dptr<const void>(weight, "rms_norm weight"),
                                     dptr(y, "rms_norm y"), stream_),
               "rms_norm");
}

void CudaBackend::causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                const Tensor& conv_state, const Tensor& y) {
  const TimedCall timed(*this, "causal_conv1d");
  const CausalConv1dParams p = make_causal_conv1d_params(x, weight, bias, conv_state, y);
  check_launch(cuda::launch_causal_conv1d(p, dptr(x, "causal_conv1d x"),
                                          dptr<const void>(weight, "causal_conv1d weight"),
                                          dptr<const void>(bias, "causal_conv1d bias"),
                                          dptr(conv_state, "causal_conv1d conv_state"),
                                          dptr(y, "causal_conv1d y"), stream_),
               "causal_conv1d");
}

void CudaBackend::selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                 const Tensor& B, const Tensor& C, const Tensor& D,
                                 const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                                 const Tensor& y) {
  const TimedCall timed(*this, "selective_scan");
  const SelectiveScanParams p =
      make_selective_scan_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  const float *up = dptr(u, "selective_scan u"), *dp = dptr(delta, "selective_scan delta");
  const float *Bp = dptr(B, "selective_scan B"), *Cp = dptr(C, "selective_scan C");
  const float* zp = dptr(z, "selective_scan z");
  float* yp = dptr(y, "selective_scan y");
  // The look-back scan's scratch (flags and per-chunk states), grown stream-ordered outside
  // graph capture; without enough of it the launcher runs a kernel that needs none.
  const size_t want = cuda::selective_scan_scratch_bytes(p, up, dp, Bp, Cp, zp, yp);
  if (want > scan_scratch_bytes_ && !capturing_) {
    if (scan_scratch_) CUDA_CHECK(cudaFreeAsync(scan_scratch_, stream_));
    scan_scratch_ = nullptr;
    scan_scratch_bytes_ = 0;
    const size_t bytes = (want + (size_t(1) << 20) - 1) & ~((size_t(1) << 20) - 1);
    const cudaError_t e = cudaMallocAsync(&scan_scratch_, bytes, stream_);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // no scratch: the scan runs without it
      scan_scratch_ = nullptr;
    } else {
      CUDA_CHECK(e);
      // Zeroed once: the tagged look-back words of a fresh buffer must match no launch's epoch.
      CUDA_CHECK(cudaMemsetAsync(scan_scratch_, 0, bytes, stream_));
      scan_scratch_bytes_ = bytes;
    }
  }
  check_launch(cuda::launch_selective_scan(
                   p, up, dp, dptr<const void>(A_log, "selective_scan A_log"), Bp, Cp,
                   dptr<const void>(D, "selective_scan D"), zp,
                   dptr<const void>(dt_bias, "selective_scan dt_bias"),
                   dptr(ssm_state, "selective_scan ssm_state"), yp,
                   want ? scan_scratch_ : nullptr, want ? scan_scratch_bytes_ : 0, stream_),
               "selective_scan");
}

void CudaBackend::dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) {
  const TimedCall timed(*this, "dt_importance");
  const DtImportanceParams p = make_dt_importance_params(delta, dt_bias, scores);
  check_launch(cuda::launch_dt_importance(p, dptr(delta, "dt_importance delta"),
                                          dptr<const void>(dt_bias, "dt_importance dt_bias"),
                                          dptr(scores, "dt_importance scores"), stream_),
               "dt_importance");
}

// The fused kernel where it applies; delta is left unwritten then (scratch, backend.h).
void CudaBackend::dt_proj_importance(const Tensor& dt_low, const Tensor& dt_proj,
                                     const Tensor& delta, const Tensor& dt_bias,
                                     const Tensor& scores) {
  const TimedCall timed(*this, "dt_proj_importance");
  const DtProjImportanceParams p =
      make_dt_proj_importance_params(dt_low, dt_proj, delta, dt_bias, scores);
  const cudaError_t e = cuda::launch_dt_proj_importance(
      p, dptr(dt_low, "dt_proj_importance dt_low"),
      dptr<const void>(dt_proj, "dt_proj_importance dt_proj"),
      dptr<const void>(dt_bias, "dt_proj_importance dt_bias"),
      dptr(scores, "dt_proj_importance scores"), stream_);
  if (e == cudaErrorNotSupported) {
    Backend::dt_proj_importance(dt_low, dt_proj, delta, dt_bias, scores);
    return;
  }
  check_launch(e, "dt_proj_importance");
}

void CudaBackend::topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                               const Tensor& idx) {
  const TimedCall timed(*this, "topk_indices");
  const TopkIndicesParams p = make_topk_indices_params(scores, n_candidates, k, idx);
  check_launch(cuda::launch_topk_indices(p, dptr(scores, "topk_indices scores"),
                                         dptr<int32_t>(idx, "topk_indices idx"), stream_),
               "topk_indices");
}

void CudaBackend::gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  const TimedCall timed(*this, "gather_rows");
  const GatherRowsParams p = make_gather_rows_params(src, idx, dst);
  check_launch(cuda::launch_gather_rows(p, dptr<const void>(src, "gather_rows src"),
                                        dptr<const int32_t>(idx, "gather_rows idx"),
                                        dptr(dst, "gather_rows dst"), err_dev_, stream_),
               "gather_rows");
}

void CudaBackend::argmax(const Tensor& x, int64_t n, const Tensor& idx) {
  const TimedCall timed(*this, "argmax");
  const ArgmaxParams p = make_argmax_params(x, n, idx);
  check_launch(cuda::launch_argmax(p, dptr<const float>(x, "argmax x"),
                                   dptr<int32_t>(idx, "argmax idx"), argmax_scratch_, stream_),
               "argmax");
}

void CudaBackend::causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                     const Tensor& conv_state, const Tensor& y) {
  const TimedCall timed(*this, "causal_conv1d_step");
  const CausalConv1dStepParams p = make_causal_conv1d_step_params(x, weight, bias, conv_state, y);
  check_launch(cuda::launch_causal_conv1d_step(
                   p, dptr(x, "causal_conv1d_step x"),
                   dptr<const void>(weight, "causal_conv1d_step weight"),
                   dptr<const void>(bias, "causal_conv1d_step bias"),
                   dptr(conv_state, "causal_conv1d_step conv_state"),
                   dptr(y, "causal_conv1d_step y"), stream_),
               "causal_conv1d_step");
}

void CudaBackend::selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                      const Tensor& B, const Tensor& C, const Tensor& D,
                                      const Tensor* z, const Tensor& dt_bias,
                                      const Tensor& ssm_state, const Tensor& y) {
  const TimedCall timed(*this, "selective_scan_step");
  const SelectiveScanStepParams p =
      make_selective_scan_step_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  check_launch(
      cuda::launch_selective_scan_step(
          p, dptr(u, "selective_scan_step u"), dptr(delta, "selective_scan_step delta"),
          dptr<const void>(A_log, "selective_scan_step A_log"), dptr(B, "selective_scan_step B"),
          dptr(C, "selective_scan_step C"), dptr<const void>(D, "selective_scan_step D"),
          dptr(z, "selective_scan_step z"),
          dptr<const void>(dt_bias, "selective_scan_step dt_bias"),
          dptr(ssm_state, "selective_scan_step ssm_state"), dptr(y, "selective_scan_step y"),
          stream_),
      "selective_scan_step");
}

// ---------------------------------------------------------------------------------------------
// Graphs

void CudaBackend::begin_capture() {
  if (capturing_) fail("[cuda] graph: already recording");
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

cudaGraph_t CudaBackend::end_capture() {
  if (!capturing_) fail("[cuda] graph: end without begin");
  capturing_ = false;
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  return g;
}

namespace {

class CudaGraphImpl : public CudaGraph {
 public:
  CudaGraphImpl(cudaGraph_t g, cudaStream_t s) : graph_(g), stream_(s) {
    CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  ~CudaGraphImpl() override {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  void replay() override { CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  cudaStream_t stream_;
};

CudaBackend& as_cuda(Backend& b) {
  auto* cb = dynamic_cast<CudaBackend*>(&b);
  if (!cb) fail("[cuda] graph: recording needs the cuda backend, not '", b.name(), "'");
  return *cb;
}

}  // namespace

class CudaRecordingImpl : public Recording {
 public:
  CudaRecordingImpl(const CudaBackend* owner, std::unique_ptr<CudaGraph> g, std::set<const void*> uses)
      : owner_(owner), graph_(std::move(g)), uses_(std::move(uses)) {
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().live.insert(this);
  }
  ~CudaRecordingImpl() override {
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().live.erase(this);
  }
  bool valid() const override { return valid_.load(); }
  void freed(const void* buf) {  // registry lock held
    if (uses_.count(buf)) valid_ = false;
  }
  const CudaBackend* owner_;
  std::unique_ptr<CudaGraph> graph_;

 private:
  std::set<const void*> uses_;
  std::atomic<bool> valid_{true};
};

void cuda_buffer_freed(const void* buf) {
  std::lock_guard<std::mutex> lock(registry().mu);
  for (CudaRecordingImpl* r : registry().live) r->freed(buf);
}

std::unique_ptr<Recording> CudaBackend::record(const std::function<void()>& enqueue) {
  std::set<const void*> uses;
  begin_capture();
  t_capture_uses = &uses;
  try {
    enqueue();
  } catch (...) {
    t_capture_uses = nullptr;
    capturing_ = false;
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    cudaGetLastError();
    throw;
  }
  t_capture_uses = nullptr;
  auto graph = std::make_unique<CudaGraphImpl>(end_capture(), stream_);
  return std::make_unique<CudaRecordingImpl>(this, std::move(graph), std::move(uses));
}

void CudaBackend::replay(Recording& recording) {
  const TimedCall timed(*this, "replay (graph)");
  auto* r = dynamic_cast<CudaRecordingImpl*>(&recording);
  if (!r || r->owner_ != this) fail("[cuda] replay: the recording was not made by this backend");
  if (!r->valid()) fail("[cuda] replay: a buffer the recording uses has been freed; record again");
  not_capturing("replay");
  r->graph_->replay();
}

void cuda_graph_begin(Backend& backend) { as_cuda(backend).begin_capture(); }

std::unique_ptr<CudaGraph> cuda_graph_end(Backend& backend) {
  CudaBackend& cb = as_cuda(backend);
  return std::make_unique<CudaGraphImpl>(cb.end_capture(), cb.stream());
}

// ---------------------------------------------------------------------------------------------
// Registry hooks (backend/registry.cpp)

BackendInfo probe_cuda_backend() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return {"cuda", false, std::string("no CUDA device: ") + cudaGetErrorString(e)};
  }
  if (n == 0) return {"cuda", false, "no CUDA device: none was found"};
  std::string name;
  try {
    name = describe_device(0);
  } catch (const Error& err) {
    return {"cuda", false, err.what()};
  }
  e = cuda::check_kernel_image();
  if (e != cudaSuccess) {
    cudaGetLastError();
    return {"cuda", false,
            name + ": this binary has no kernels for it (" + cudaGetErrorString(e) +
                "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=<its compute capability>"};
  }
  return {"cuda", true, name};
}

std::unique_ptr<Backend> create_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace dm
