#include "backend/vulkan/recorder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace dm::vk {
namespace {

// A batch is submitted early (without waiting) past this many dispatches, so a long forward
// keeps the device busy while the host records the rest; a whole decode step or a prefill of
// a small model fits in one batch.
constexpr uint32_t kMaxDispatchesPerBatch = 1024;
constexpr size_t kMaxInFlight = 3;
constexpr size_t kStagingBytes = size_t(16) << 20;
constexpr uint32_t kSetsPerPool = 128;
constexpr uint32_t kMaxBindings = 16;
// Default fence polling on a discrete GPU (wait_fence): longer than a 2.8b decode step, so that
// the host seldom blocks while a token is computed; a prefill's longer waits poll this long, then
// block.
constexpr uint32_t kDiscreteFenceSpinUs = 5000;

constexpr VkPipelineStageFlags kDeviceStages =
    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
constexpr VkAccessFlags kDeviceAccess = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                        VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;

}  // namespace

Recorder::Recorder(Context& ctx) : ctx_(ctx) {
  const char* b = std::getenv("DM_VULKAN_BARRIERS");
  wide_barriers_ = b && std::strcmp(b, "wide") == 0;
  // Polling pays on a discrete GPU (see wait_fence); on an integrated GPU the CPU core it burns
  // shares the package's power, and on a CPU device (lavapipe) it takes a core from the driver.
  fence_spin_us_ = ctx_.caps.type == "discrete" ? kDiscreteFenceSpinUs : 0;
  if (const char* e = std::getenv("DM_VULKAN_FENCE_SPIN_US"); e && *e) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(e, &end, 10);
    if (*end != '\0' || v > 1000000)
      fail("[vulkan] DM_VULKAN_FENCE_SPIN_US=", e, ": want microseconds, 0 … 1000000");
    fence_spin_us_ = uint32_t(v);
  }
  ctx_.deferred_free = [this](VkBuffer b, VkDeviceMemory m) {
    buffer_freed(b);
    if (recording_ && !capturing_) recording_->dead.emplace_back(b, m);
    else if (!in_flight_.empty()) in_flight_.back()->dead.emplace_back(b, m);
    else free_now(b, m);
  };
}

void Recorder::free_now(VkBuffer b, VkDeviceMemory m) {
  vkDestroyBuffer(ctx_.device, b, nullptr);
  vkFreeMemory(ctx_.device, m, nullptr);
}

Recorder::~Recorder() {
  if (capturing_) abort_capture();
  try {
    finish();  // before the captures go: an open batch may hold one as its tail
  } catch (...) {
    // Destruction must not throw; a lost device has nothing left to wait for.
  }
  if (recording_) recording_->tail = VK_NULL_HANDLE;  // a failed finish: never submitted now
  release_captures();
  ctx_.deferred_free = nullptr;
  auto destroy = [&](Frame& f) {
    for (auto [b, m] : f.dead) free_now(b, m);
    for (VkDescriptorPool p : f.desc_pools) vkDestroyDescriptorPool(ctx_.device, p, nullptr);
    if (f.queries) vkDestroyQueryPool(ctx_.device, f.queries, nullptr);
    if (f.fence) vkDestroyFence(ctx_.device, f.fence, nullptr);
    if (f.pool) vkDestroyCommandPool(ctx_.device, f.pool, nullptr);
    f.keep.clear();
    f.staging.reset();
  };
  vkDeviceWaitIdle(ctx_.device);
  if (recording_) destroy(*recording_);
  for (auto& f : in_flight_) destroy(*f);
  for (auto& f : free_) destroy(*f);
}

Recorder::Frame& Recorder::current() {
  if (recording_) return *recording_;
  std::unique_ptr<Frame> f;
  if (!free_.empty()) {
    f = std::move(free_.back());
    free_.pop_back();
  } else {
    f = std::make_unique<Frame>();
    create_command_buffer(*f, VK_COMMAND_POOL_CREATE_TRANSIENT_BIT);
    VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_CHECK(vkCreateFence(ctx_.device, &fi, nullptr, &f->fence));
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  VK_CHECK(vkBeginCommandBuffer(f->cmd, &bi));
  if (profiling_) {
    if (!f->queries) {
      VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
      qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
      qi.queryCount = 2 * kMaxDispatchesPerBatch;
      VK_CHECK(vkCreateQueryPool(ctx_.device, &qi, nullptr, &f->queries));
    }
    vkCmdResetQueryPool(f->cmd, f->queries, 0, 2 * kMaxDispatchesPerBatch);
  }
  recording_ = std::move(f);
  return *recording_;
}

void Recorder::barrier(VkPipelineStageFlags src_stage, VkAccessFlags src_access,
                       VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = src_access;
  mb.dstAccessMask = dst_access;
  vkCmdPipelineBarrier(current().cmd, src_stage, dst_stage, 0, 1, &mb, 0, nullptr, 0, nullptr);
  ++stats_.barriers;
}

// Everything before it (copies and dispatches, their writes) before everything after it.
void Recorder::full_barrier() {
  barrier(kDeviceStages, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, kDeviceStages,
          kDeviceAccess);
  copies_unordered_ = false;
}

namespace {
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t ceil_div_s(int64_t a, int64_t b) { return -floor_div(-a, b); }
}  // namespace

// Exact for two row sets of equal stride (rows narrower than the stride): rows i of a and j of
// b, k = j - i, intersect iff -wb - d < k·S < wa - d with d = b0 - a0, for some k in
// (-ra, rb). Anything else falls back to the hulls.
bool Recorder::overlap(const Access& a, const Access& b) {
  if (a.buf != b.buf || a.begin >= b.end || b.begin >= a.end) return false;
  if (a.rows <= 1 && b.rows <= 1) return true;
  if (a.stride != b.stride || a.stride == 0 || a.row_bytes > a.stride || b.row_bytes > b.stride)
    return true;
  const int64_t S = int64_t(a.stride), d = int64_t(b.begin) - int64_t(a.begin);
  const int64_t wa = int64_t(a.row_bytes), wb = int64_t(b.row_bytes);
  int64_t kmin = floor_div(-wb - d, S) + 1, kmax = ceil_div_s(wa - d, S) - 1;
  kmin = std::max<int64_t>(kmin, -(int64_t(a.rows) - 1));
  kmax = std::min<int64_t>(kmax, int64_t(b.rows) - 1);
  return kmin <= kmax;
}

bool Recorder::overlap_for_test(const BufferUse& a, const BufferUse& b) {
  return overlap({VK_NULL_HANDLE, a.begin, a.end, a.rows, a.row_bytes, a.stride, a.write},
                 {VK_NULL_HANDLE, b.begin, b.end, b.rows, b.row_bytes, b.stride, b.write});
}

void Recorder::track(const std::vector<Access>& accesses) {
  // The validation layer judges hazards by descriptor ranges, which cannot express column
  // slices; under validation the recorder compares hulls, so its barriers are a superset of
  // what the layer checks and a clean run means every real hazard had a barrier.
  const bool hulls = ctx_.validation;
  bool hazard = false;
  for (const Access& a : accesses) {
    for (const Access& p : pending_) {
      if ((a.write || p.write) &&
          (hulls ? a.buf == p.buf && a.begin < p.end && p.begin < a.end : overlap(a, p))) {
        hazard = true;
        break;
      }
    }
    if (hazard) break;
  }
  const bool copy = !accesses.empty() && accesses.front().transfer;
  // A copy also needs a barrier when an earlier narrow one retired accesses without ordering
  // them before copies.
  if (hazard || (copy && copies_unordered_)) {
    if (copy || wide_barriers_) {
      full_barrier();
    } else {
      // A dispatch: wait for the stages the pending accesses ran in (only compute shaders within
      // a decode step: a TRANSFER source stage would also wait for the copy engine), make their
      // writes available, and block only compute shaders after it.
      VkPipelineStageFlags src = 0;
      VkAccessFlags src_access = 0;
      for (const Access& p : pending_) {
        src |= p.transfer ? VK_PIPELINE_STAGE_TRANSFER_BIT : VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
        if (p.write) src_access |= p.transfer ? VK_ACCESS_TRANSFER_WRITE_BIT : VK_ACCESS_SHADER_WRITE_BIT;
      }
      barrier(src, src_access, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
              VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
      copies_unordered_ = true;
    }
    pending_.clear();
  }
  pending_.insert(pending_.end(), accesses.begin(), accesses.end());
}

VkDescriptorSet Recorder::allocate_set(Frame& f, VkDescriptorSetLayout layout) {
  if (f.desc_pools.empty() || f.sets_in_last_pool == kSetsPerPool) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kMaxBindings};
    VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pi.maxSets = kSetsPerPool;
    pi.poolSizeCount = 1;
    pi.pPoolSizes = &size;
    VkDescriptorPool pool;
    VK_CHECK(vkCreateDescriptorPool(ctx_.device, &pi, nullptr, &pool));
    f.desc_pools.push_back(pool);
    f.sets_in_last_pool = 0;
  }
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = f.desc_pools.back();
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  VkDescriptorSet set;
  VK_CHECK(vkAllocateDescriptorSets(ctx_.device, &ai, &set));
  ++f.sets_in_last_pool;
  return set;
}

void Recorder::dispatch(Pipeline& p, const std::vector<BufferUse>& uses, const void* push,
                        uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  DM_ASSERT(uses.size() == p.n_bindings, p.label, ": ", uses.size(), " buffers for ",
            p.n_bindings, " bindings");
  DM_ASSERT(push_bytes == p.push_bytes, p.label, ": ", push_bytes, " push-constant bytes for a ",
            p.push_bytes, "-byte block");
  DM_ASSERT(uses.size() <= kMaxBindings);
  const Caps& caps = ctx_.caps;
  DM_ASSERT(gx <= caps.max_wg_count[0] && gy <= caps.max_wg_count[1] && gz <= caps.max_wg_count[2],
            p.label, ": grid ", gx, "x", gy, "x", gz, " exceeds maxComputeWorkGroupCount");
  if (gx == 0 || gy == 0 || gz == 0) return;

  if (recording_ && recording_->dispatches >= kMaxDispatchesPerBatch && !capturing_) submit();
  if (capturing_) capture_uses_.reserve(capture_uses_.size() + uses.size());
  for (const BufferUse& u : uses)
    if (capturing_) capture_uses_.push_back(u.buf->buffer);
  Frame& f = current();

  std::vector<Access> acc;
  acc.reserve(uses.size());
  for (const BufferUse& u : uses) {
    DM_ASSERT(u.buf && u.desc_range > 0 && u.desc_offset + u.desc_range <= u.buf->vk_size, p.label);
    DM_ASSERT(u.desc_offset % caps.min_storage_offset_align == 0, p.label);
    if (u.track && u.end > u.begin)
      acc.push_back({u.buf->buffer, u.begin, u.end, u.rows, u.row_bytes, u.stride, u.write});
  }
  const uint64_t barriers_before = stats_.barriers;
  track(acc);
  static const bool trace = std::getenv("DM_VULKAN_TRACE") != nullptr;
  if (trace) {
    std::fprintf(stderr, "[vulkan] %s%s grid %ux%ux%u:", stats_.barriers > barriers_before ? "(barrier) " : "",
                 p.label.c_str(), gx, gy, gz);
    for (const BufferUse& u : uses)
      std::fprintf(stderr, " %s%p[%llu,%llu)%s", u.write ? "w" : "r", (void*)u.buf->buffer,
                   (unsigned long long)u.begin, (unsigned long long)u.end, u.track ? "" : "(untracked)");
    std::fprintf(stderr, "\n");
  }

  VkDescriptorSet set = allocate_set(f, p.set_layout);
  VkDescriptorBufferInfo infos[kMaxBindings];
  VkWriteDescriptorSet writes[kMaxBindings];
  for (size_t i = 0; i < uses.size(); ++i) {
    infos[i] = {uses[i].buf->buffer, uses[i].desc_offset, uses[i].desc_range};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = uint32_t(i);
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(ctx_.device, uint32_t(uses.size()), writes, 0, nullptr);

  vkCmdBindPipeline(f.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vkCmdBindDescriptorSets(f.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  if (push_bytes) vkCmdPushConstants(f.cmd, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  const bool timed = profiling_ && f.queries;
  const uint32_t q = uint32_t(f.query_labels.size()) * 2;
  if (timed) vkCmdWriteTimestamp(f.cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, f.queries, q);
  vkCmdDispatch(f.cmd, gx, gy, gz);
  if (timed) {
    vkCmdWriteTimestamp(f.cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, f.queries, q + 1);
    f.query_labels.push_back(profile_grid_ ? p.label + " " + std::to_string(gx) + "x" + std::to_string(gy) +
                                                 "x" + std::to_string(gz)
                                           : p.label);
  }
  ++f.dispatches;
  ++stats_.dispatches;
}

void Recorder::upload(VulkanBuffer& dst, size_t offset, const void* src, size_t bytes) {
  not_capturing("upload");
  DM_ASSERT(offset + bytes <= dst.bytes(), "upload of ", bytes, " bytes at ", offset,
            " past the end of a ", dst.bytes(), "-byte buffer");
  const auto* from = static_cast<const uint8_t*>(src);
  while (bytes > 0) {
    Frame* f = &current();
    if (!f->staging) f->staging = std::make_unique<VulkanBuffer>(ctx_, kStagingBytes, BufferKind::Upload);
    if (f->staging_used == kStagingBytes) {
      submit();
      f = &current();
      if (!f->staging) f->staging = std::make_unique<VulkanBuffer>(ctx_, kStagingBytes, BufferKind::Upload);
    }
    const size_t n = std::min(bytes, kStagingBytes - f->staging_used);
    std::memcpy(static_cast<uint8_t*>(f->staging->mapped) + f->staging_used, from, n);
    track({{dst.buffer, offset, offset + n, 1, n, 0, true, true}});
    const VkBufferCopy region{f->staging_used, offset, n};
    vkCmdCopyBuffer(f->cmd, f->staging->buffer, dst.buffer, 1, &region);
    ++stats_.copies;
    f->staging_used = (f->staging_used + n + 15) / 16 * 16;
    f->staging_used = std::min(f->staging_used, kStagingBytes);
    from += n;
    offset += n;
    bytes -= n;
  }
}

void Recorder::download(VulkanBuffer& src, size_t offset, void* dst, size_t bytes) {
  not_capturing("download");
  DM_ASSERT(offset + bytes <= src.bytes(), "download of ", bytes, " bytes at ", offset,
            " past the end of a ", src.bytes(), "-byte buffer");
  if (bytes == 0) {
    finish();
    return;
  }
  if (!readback_ || readback_->bytes() < bytes)
    readback_ = std::make_unique<VulkanBuffer>(ctx_, std::max(bytes, size_t(1) << 20), BufferKind::Readback);
  Frame& f = current();
  track({{src.buffer, offset, offset + bytes, 1, bytes, 0, false, true}});
  const VkBufferCopy region{offset, 0, bytes};
  vkCmdCopyBuffer(f.cmd, src.buffer, readback_->buffer, 1, &region);
  ++stats_.copies;
  // Make the copy's writes visible to the host before the fence says it is done.
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(f.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb,
                       0, nullptr, 0, nullptr);
  finish();
  std::memcpy(dst, readback_->mapped, bytes);
}

void Recorder::retire(std::unique_ptr<VulkanBuffer> buf) {
  if (!buf) return;
  not_capturing("retire");
  current().keep.push_back(std::move(buf));
}

void Recorder::submit() {
  not_capturing("submit");
  if (!recording_) return;
  std::unique_ptr<Frame> f = std::move(recording_);
  VK_CHECK(vkEndCommandBuffer(f->cmd));
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  // Plain: cmd; replayed: cmd, tail; folded replay: head, tail, cmd (= post).
  const VkCommandBuffer plain[2] = {f->cmd, f->tail}, folded[3] = {f->head, f->tail, f->cmd};
  si.commandBufferCount = f->head ? 3 : f->tail ? 2 : 1;
  si.pCommandBuffers = f->head ? folded : plain;
  const VkResult r = vkQueueSubmit(ctx_.queue, 1, &si, f->fence);
  VK_CHECK(r);
  ++stats_.submits;
  f->serial = ++submitted_;
  in_flight_.push_back(std::move(f));
  while (in_flight_.size() > kMaxInFlight) {
    std::unique_ptr<Frame> old = std::move(in_flight_.front());
    in_flight_.pop_front();
    wait_fence(old->fence);
    recycle(*old);
    free_.push_back(std::move(old));
  }
}

// Poll the fence for up to fence_spin_us_ before blocking in vkWaitForFences, whose wake-up a
// latency-bound decode step pays every token (CUDA's synchronisation spins by default). H200,
// 130m decode waiting for every token's logits (session 14, two rounds): blocking at once
// 600-607 µs a token, polling up to 200 µs 601-617 (the wait is longer), 1000 µs 541-546,
// against 534 for greedy generation, which does not wait. DM_VULKAN_FENCE_SPIN_US=N overrides.
void Recorder::wait_fence(VkFence fence) {
  if (fence_spin_us_ > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(fence_spin_us_);
    do {
      const VkResult r = vkGetFenceStatus(ctx_.device, fence);
      if (r == VK_SUCCESS) return;
      if (r != VK_NOT_READY) VK_CHECK(r);
    } while (std::chrono::steady_clock::now() < until);
  }
  VK_CHECK(vkWaitForFences(ctx_.device, 1, &fence, VK_TRUE, UINT64_MAX));
}

void Recorder::finish() {
  submit();
  while (!in_flight_.empty()) {
    std::unique_ptr<Frame> f = std::move(in_flight_.front());
    in_flight_.pop_front();
    wait_fence(f->fence);
    recycle(*f);
    free_.push_back(std::move(f));
  }
  check_messages();
}

void Recorder::recycle(Frame& f) {
  if (f.queries && !f.query_labels.empty()) {
    std::vector<uint64_t> ts(f.query_labels.size() * 2);
    VK_CHECK(vkGetQueryPoolResults(ctx_.device, f.queries, 0, uint32_t(ts.size()),
                                   ts.size() * sizeof(uint64_t), ts.data(), sizeof(uint64_t),
                                   VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
    for (size_t i = 0; i < f.query_labels.size(); ++i) {
      KernelTime& t = times_[f.query_labels[i]];
      t.kernel = f.query_labels[i];
      ++t.dispatches;
      if (ts[2 * i + 1] >= ts[2 * i])
        t.total_us += double(ts[2 * i + 1] - ts[2 * i]) * ctx_.caps.timestamp_period_ns * 1e-3;
    }
  }
  f.query_labels.clear();
  completed_ = std::max(completed_, f.serial);  // its fence was waited for
  f.tail = VK_NULL_HANDLE;
  if (f.head) f.cmd = f.head;  // the pool reset below resets post too
  f.head = VK_NULL_HANDLE;
  VK_CHECK(vkResetCommandPool(ctx_.device, f.pool, 0));
  for (VkDescriptorPool p : f.desc_pools) VK_CHECK(vkResetDescriptorPool(ctx_.device, p, 0));
  // Keep one descriptor pool; the rest were a peak.
  while (f.desc_pools.size() > 1) {
    vkDestroyDescriptorPool(ctx_.device, f.desc_pools.back(), nullptr);
    f.desc_pools.pop_back();
  }
  f.sets_in_last_pool = 0;
  f.keep.clear();
  for (auto [b, m] : f.dead) free_now(b, m);
  f.dead.clear();
  f.staging_used = 0;
  f.dispatches = 0;
  VK_CHECK(vkResetFences(ctx_.device, 1, &f.fence));
}

void Recorder::set_profiling(bool on) {
  if (on && !ctx_.caps.timestamps)
    fail("[vulkan] profiling needs timestamp queries, which ", ctx_.caps.name,
         "'s compute queue does not have");
  finish();
  if (on && !profiling_) times_.clear();  // each profiled stretch starts a fresh table
  profiling_ = on;
}

std::vector<KernelTime> Recorder::profile() const {
  std::vector<KernelTime> out;
  for (const auto& [name, t] : times_) out.push_back(t);
  std::sort(out.begin(), out.end(),
            [](const KernelTime& a, const KernelTime& b) { return a.total_us > b.total_us; });
  return out;
}

void Recorder::check_messages() {
  if (!ctx_.validation) return;
  std::vector<std::string> msgs = ctx_.take_messages();
  if (msgs.empty()) return;
  std::string first = msgs.front();
  for (char& c : first)
    if (c == '\n') c = ' ';
  fail("[vulkan] validation: ", first,
       msgs.size() > 1 ? " (+" + std::to_string(msgs.size() - 1) + " more)" : std::string());
}

}  // namespace dm::vk
