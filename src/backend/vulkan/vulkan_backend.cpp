// The Vulkan backend's construction, buffers and bindings, capture and replay, and the entry
// points of vulkan_backend.h. The class and the design: vulkan_backend_impl.h.
#include "backend/vulkan/vulkan_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "backend/profile_table.h"
#include "backend/vulkan/vulkan_backend_impl.h"
#include "core/env.h"

namespace dm::vk {

VulkanBackend::VulkanBackend(int device)
    : ctx_(std::make_unique<vk::Context>(device)),
      pipelines_(*ctx_),
      rec_(std::make_unique<vk::Recorder>(*ctx_)) {
  align_ = std::max<VkDeviceSize>(ctx_->caps.min_storage_offset_align, 4);
  DM_ASSERT(align_ % 4 == 0, "minStorageBufferOffsetAlignment ", align_);
  dummy_ = std::make_unique<VulkanBuffer>(*ctx_, 16, BufferKind::Device);
  // gemm.gemv_norm_tail's done count: zero between its dispatches (each resets it). Made here,
  // not at its first use, which may be inside a recording (no uploads there).
  tail_counter_ = std::make_unique<VulkanBuffer>(*ctx_, 16, BufferKind::Device);
  const uint32_t zeros[4] = {};
  rec_->upload(*tail_counter_, 0, zeros, sizeof zeros);
  // DM_VULKAN_PROFILE=FILE: time every dispatch of this backend's life, one row per kernel and
  // grid (so the same kernel at two shapes, e.g. a layer at 32K and at 2,000 rows, gets two
  // rows), and append the table to FILE when the backend goes: a per-dispatch profile of any
  // program (decimamba bench) without a --profile flag of its own.
  // The file is opened (for appending) now, so a path that cannot be written fails here with
  // its name rather than losing the table at the end.
  if (const char* e = std::getenv("DM_VULKAN_PROFILE"); e && *e) {
    if (!std::ofstream(e, std::ios::app))
      fail("[vulkan] DM_VULKAN_PROFILE=", e, ": cannot open that file for appending");
    profile_path_ = e;
    rec_->set_profiling(true);
    rec_->set_profile_grid(true);
  }
  // DM_VULKAN_ASYNC_DOWNLOAD=0: download_start downloads at once (Backend's default), so greedy
  // decoding submits, waits, submits; 1 (the default): the copy is enqueued and not waited for.
  async_download_ = env_choice("vulkan", "DM_VULKAN_ASYNC_DOWNLOAD", {"1", "0"}) == 0;
}
VulkanBackend::~VulkanBackend() {
  try {
    rec_->finish();
    if (!profile_path_.empty()) {
      std::ofstream f(profile_path_, std::ios::app);
      f << vulkan_profile_table(*this);
      if (!f) std::fprintf(stderr, "decimamba: DM_VULKAN_PROFILE=%s: writing the profile failed\n",
                           profile_path_.c_str());
    }
  } catch (const std::exception& e) {  // a destructor does not throw: say it, go on
    std::fprintf(stderr, "decimamba: vulkan backend shutdown: %s\n", e.what());
  } catch (...) {
  }
  scan_h_.reset();
  scan_d_.reset();
  scan_sync_.reset();
  gemm_part_.reset();
  tail_counter_.reset();
  dummy_.reset();
  rec_.reset();
}

void VulkanBackend::upload(Buffer& dst, size_t offset, const void* src, size_t bytes) {
  if (offset + bytes > dst.bytes())
    fail("[vulkan] upload of ", bytes, " bytes at offset ", offset, " runs past a ", dst.bytes(),
         "-byte buffer");
  rec_->upload(vbuf(dst, "upload"), offset, src, bytes);
}

void VulkanBackend::download(const Buffer& src, size_t offset, void* dst, size_t bytes) {
  if (offset + bytes > src.bytes())
    fail("[vulkan] download of ", bytes, " bytes at offset ", offset, " runs past a ", src.bytes(),
         "-byte buffer");
  rec_->download(vbuf(const_cast<Buffer&>(src), "download"), offset, dst, bytes);
}

static_assert(Recorder::kSlotBytes >= Backend::kAsyncDownloadMax, "a ring slot holds any download_start");
static_assert(Recorder::kSlots >= size_t(Backend::kAsyncDownloadsOutstanding), "the promised count");

uint64_t VulkanBackend::download_start(const Buffer& src, size_t offset, size_t bytes) {
  if (!async_download_) return Backend::download_start(src, offset, bytes);
  if (bytes > kAsyncDownloadMax)
    fail("[vulkan] download_start: ", bytes, " bytes, at most ", kAsyncDownloadMax);
  if (offset > src.bytes() || bytes > src.bytes() - offset)
    fail("[vulkan] download_start of ", bytes, " bytes at offset ", offset, " runs past a ",
         src.bytes(), "-byte buffer");
  return rec_->download_start(vbuf(const_cast<Buffer&>(src), "download_start"), offset, bytes);
}

void VulkanBackend::download_wait(uint64_t ticket, void* dst) {
  if (!async_download_) return Backend::download_wait(ticket, dst);
  rec_->download_wait(ticket, dst);
}

VulkanBuffer& VulkanBackend::vbuf(Buffer& b, const char* what) {
  auto* vb = dynamic_cast<VulkanBuffer*>(&b);
  if (!vb || &vb->ctx != ctx_.get())
    fail("[vulkan] ", what, ": the buffer was not allocated by this Vulkan backend");
  return *vb;
}

BufferUse VulkanBackend::bind(const Tensor& t, bool write, const char* kernel, const char* name) {
  VulkanBuffer& vb = vbuf(*t.buf, kernel);
  BufferUse u;
  u.buf = &vb;
  u.desc_offset = t.offset / align_ * align_;
  const VkDeviceSize rel = t.offset - u.desc_offset;
  // The range covers exactly the tensor (whole 32-bit words): the validation layer and any
  // robustness checks then see what the dispatch really addresses.
  const VkDeviceSize need = std::max<VkDeviceSize>(4, (rel + t.span_bytes() + 3) / 4 * 4);
  u.desc_range = need;
  if (need > ctx_->caps.max_storage_range / 4 * 4)
    fail("[vulkan] ", kernel, ": ", name, " ", t.describe(), " spans ", t.span_bytes(),
         " bytes, more than one binding may address on ", ctx_->caps.name,
         " (maxStorageBufferRange ", ctx_->caps.max_storage_range, ")");
  u.begin = t.offset;
  u.end = t.offset + t.span_bytes();
  u.rows = VkDeviceSize(std::max<int64_t>(t.rows, 1));
  u.row_bytes = VkDeviceSize(t.cols) * dtype_size(t.dtype);
  u.stride = VkDeviceSize(t.row_stride) * dtype_size(t.dtype);
  u.write = write;
  return u;
}

ScanBindings VulkanBackend::bind_scan(const char* k, const Tensor& u, const Tensor& delta,
                                      const Tensor& A_log, const Tensor& B, const Tensor& C,
                                      const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                                      const Tensor& ssm_state, const Tensor& y, bool delta_out) {
  ScanBindings b;
  b.u = bind(u, false, k, "u");
  b.delta = bind(delta, delta_out, k, "delta");
  b.A_log = bind(A_log, false, k, "A_log");
  b.B = bind(B, false, k, "B");
  b.C = bind(C, false, k, "C");
  b.D = bind(D, false, k, "D");
  b.z = z ? bind(*z, false, k, "z") : dummy();
  b.dt_bias = bind(dt_bias, false, k, "dt_bias");
  b.state = bind(ssm_state, true, k, "ssm_state");
  b.y = bind(y, true, k, "y");
  b.off = {off(u, b.u),         off(delta, b.delta), off(A_log, b.A_log),
           off(B, b.B),         off(C, b.C),         off(D, b.D),
           z ? off(*z, b.z) : 0u, off(dt_bias, b.dt_bias), off(ssm_state, b.state),
           off(y, b.y)};
  return b;
}

int64_t VulkanBackend::rows_fit(const Tensor& t) const {
  const uint64_t lim = ctx_->caps.max_storage_range / 4 * 4 - align_ - 4;
  if (t.span_bytes() <= lim || t.rows <= 1) return std::max<int64_t>(t.rows, 1);
  const uint64_t es = dtype_size(t.dtype);
  if (uint64_t(t.cols) * es > lim)
    fail("[vulkan] ", t.describe(), ": one row is larger than ", ctx_->caps.name,
         " can bind (maxStorageBufferRange ", ctx_->caps.max_storage_range, ")");
  return int64_t((lim / es - uint64_t(t.cols)) / uint64_t(t.row_stride)) + 1;
}

namespace {

// One or more captures of the same work, replayed in turn (DM_VULKAN_REPLAY_COPIES).
class VulkanRecording final : public Recording {
 public:
  bool valid() const override {
    for (const auto& c : copies)
      if (!c->valid()) return false;
    return true;
  }
  std::vector<std::unique_ptr<vk::Captured>> copies;
  size_t next = 0;  // the copy the next replay submits
};

// DM_VULKAN_REPLAY_COPIES=N (1 to 4, read at record time; default 2): record() captures its work
// N times and replay() submits the copies in turn, so that a replay does not resubmit a command
// buffer the queue may still be running (greedy decoding keeps steps in flight). Two copies:
// greedy decoding 2-3 µs a token faster at 130m, 12 at 2.8b (H200, session 19).
int replay_copies() { return int(env_int("vulkan", "DM_VULKAN_REPLAY_COPIES", 1, 4, 2)); }

}  // namespace

std::unique_ptr<Recording> VulkanBackend::record(const std::function<void()>& enqueue) {
  if (rec_->profiling()) return nullptr;  // --profile times every dispatch: run eagerly
  const int n = replay_copies();
  auto r = std::make_unique<VulkanRecording>();
  for (int i = 0; i < n; ++i) {
    rec_->begin_capture();
    try {
      enqueue();
    } catch (...) {
      rec_->abort_capture();
      throw;
    }
    r->copies.push_back(rec_->end_capture());
  }
  return r;
}

void VulkanBackend::replay(Recording& recording) {
  auto* r = dynamic_cast<VulkanRecording*>(&recording);
  if (!r) fail("[vulkan] replay: the recording was not made by the Vulkan backend");
  rec_->replay(*r->copies[r->next]);
  r->next = (r->next + 1) % r->copies.size();
}

}  // namespace dm::vk

namespace dm {
namespace {

using vk::VulkanBackend;

VulkanBackend* as_vulkan(Backend& b) { return dynamic_cast<VulkanBackend*>(&b); }

}  // namespace

std::vector<VulkanDeviceInfo> list_vulkan_devices(std::string* why) {
  std::vector<VulkanDeviceInfo> out;
  for (const auto& d : vk::enumerate_devices(why))
    out.push_back({d.index, d.caps.name, d.caps.describe()});
  return out;
}

BackendInfo probe_vulkan_backend() {
  BackendInfo info;
  info.name = "vulkan";
  std::string why;
  const auto devs = vk::enumerate_devices(&why);
  info.available = !devs.empty();
  info.detail = devs.empty() ? why : devs.front().caps.name + " (" + devs.front().caps.type + ")";
  info.software = !devs.empty() && devs.front().caps.type == "cpu";
  return info;
}

std::unique_ptr<Backend> create_vulkan_backend(int device) {
  return std::make_unique<VulkanBackend>(device);
}

bool vulkan_set_profiling(Backend& backend, bool on) {
  VulkanBackend* v = as_vulkan(backend);
  if (!v) return false;
  v->recorder().set_profiling(on);
  return true;
}

std::vector<VulkanKernelTime> vulkan_profile(Backend& backend) {
  std::vector<VulkanKernelTime> out;
  VulkanBackend* v = as_vulkan(backend);
  if (!v) return out;
  v->recorder().finish();
  for (const auto& t : v->recorder().profile()) out.push_back({t.kernel, t.dispatches, t.total_us});
  return out;
}

std::string vulkan_profile_table(Backend& backend) {
  std::vector<ProfileRow> rows;
  for (const VulkanKernelTime& t : vulkan_profile(backend))
    rows.push_back({t.kernel, t.dispatches, t.total_us});
  return format_profile_table(rows);
}

bool vulkan_stats(const Backend& backend, VulkanStats* out) {
  auto* v = dynamic_cast<const VulkanBackend*>(&backend);
  if (!v) return false;
  const auto& s = v->recorder().stats();
  *out = {s.dispatches, s.copies, s.barriers, s.submits, v->caps().type == "discrete",
          v->recorder().fence_spin_us()};
  return true;
}

bool vulkan_strided_overlap(uint64_t a_begin, uint64_t a_rows, uint64_t a_row_bytes,
                            uint64_t a_stride, uint64_t b_begin, uint64_t b_rows,
                            uint64_t b_row_bytes, uint64_t b_stride) {
  vk::BufferUse a, b;
  a.begin = a_begin, a.rows = a_rows, a.row_bytes = a_row_bytes, a.stride = a_stride;
  a.end = a_begin + (a_rows - 1) * a_stride + a_row_bytes;
  b.begin = b_begin, b.rows = b_rows, b.row_bytes = b_row_bytes, b.stride = b_stride;
  b.end = b_begin + (b_rows - 1) * b_stride + b_row_bytes;
  return vk::Recorder::overlap_for_test(a, b);
}

}  // namespace dm
