// The fourth noun: the recorder. Dispatches and copies are recorded into a command buffer and
// submitted in batches; synchronization is derived, never written by kernel code: every
// dispatch declares the byte ranges it reads and writes, and the recorder inserts one memory
// barrier exactly when a new access overlaps a pending one (read-after-write, write-after-read,
// write-after-write) since the last barrier. Tracking spans submissions (a barrier orders
// against everything earlier on the queue), so a batch may be submitted early without losing
// its dependencies.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/vulkan/context.h"
#include "backend/vulkan/pipeline.h"

namespace dm::vk {

// One storage-buffer binding of a dispatch: the descriptor range and the bytes it really
// touches (for hazard tracking). track = false for placeholders of absent optional tensors.
struct BufferUse {
  VulkanBuffer* buf = nullptr;
  VkDeviceSize desc_offset = 0, desc_range = 0;
  // Touched bytes, absolute in buf: rows of row_bytes every stride bytes from begin (a plain
  // range is one row). Column slices of one matrix (x and z of xz) are then disjoint.
  VkDeviceSize begin = 0, end = 0;
  VkDeviceSize rows = 1, row_bytes = 0, stride = 0;
  bool write = false;
  bool track = true;
};

struct KernelTime {
  std::string kernel;
  uint64_t dispatches = 0;
  double total_us = 0;
};

struct RecorderStats {
  uint64_t dispatches = 0, copies = 0, barriers = 0, submits = 0;
};

class Recorder {
 public:
  explicit Recorder(Context& ctx);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  void dispatch(Pipeline& p, const std::vector<BufferUse>& uses, const void* push,
                uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz);
  // Enqueues a host→device copy: the bytes are copied into staging now, the caller's memory is
  // free on return.
  void upload(VulkanBuffer& dst, size_t offset, const void* src, size_t bytes);
  // Runs everything enqueued, then copies device bytes to the host.
  void download(VulkanBuffer& src, size_t offset, void* dst, size_t bytes);
  // Keeps a buffer alive until the work enqueued so far has run.
  void retire(std::unique_ptr<VulkanBuffer> buf);

  void submit();  // hands the current batch to the queue, does not wait
  void finish();  // submit + wait for everything; reports validation messages

  void set_profiling(bool on);
  std::vector<KernelTime> profile() const;  // completed batches only; call after finish()
  void reset_profile() { times_.clear(); }
  const RecorderStats& stats() const { return stats_; }
  static bool overlap_for_test(const BufferUse& a, const BufferUse& b);

 private:
  struct Frame {
    VkCommandPool pool = VK_NULL_HANDLE;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    std::vector<VkDescriptorPool> desc_pools;
    uint32_t sets_in_last_pool = 0;
    std::vector<std::unique_ptr<VulkanBuffer>> keep;  // staging and retired buffers
    std::vector<std::pair<VkBuffer, VkDeviceMemory>> dead;  // dropped while in use
    std::unique_ptr<VulkanBuffer> staging;            // upload arena, reused
    size_t staging_used = 0;
    VkQueryPool queries = VK_NULL_HANDLE;
    std::vector<std::string> query_labels;            // one per timestamp pair
    uint32_t dispatches = 0;
  };
  struct Access {
    VkBuffer buf;
    VkDeviceSize begin, end;  // hull
    VkDeviceSize rows, row_bytes, stride;
    bool write;
  };
  static bool overlap(const Access& a, const Access& b);

  Frame& current();  // begins a batch when none is being recorded
  void recycle(Frame& f);
  void free_now(VkBuffer b, VkDeviceMemory m);  // after its fence: read timestamps, free per-batch objects
  void track(const std::vector<Access>& accesses);
  void barrier(VkPipelineStageFlags dst_stage, VkAccessFlags dst_access);
  VkDescriptorSet allocate_set(Frame& f, VkDescriptorSetLayout layout);
  void check_messages();

  Context& ctx_;
  std::unique_ptr<Frame> recording_;
  std::deque<std::unique_ptr<Frame>> in_flight_;
  std::vector<std::unique_ptr<Frame>> free_;
  std::vector<Access> pending_;
  std::unique_ptr<VulkanBuffer> readback_;
  bool profiling_ = false;
  std::map<std::string, KernelTime> times_;
  RecorderStats stats_;
};

}  // namespace dm::vk
