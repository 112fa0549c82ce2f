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

class Recorder;

// A command buffer recorded once (Recorder::begin_capture / end_capture, recording.cpp) and
// submitted again by Recorder::replay. It starts and ends with a full barrier, so it is ordered
// against the work before and after it on the queue. Invalid once a buffer it binds is freed.
// fold_ (DM_VULKAN_REPLAY_FOLD=1 when it is recorded; off by default): replay leaves the batch
// open so that what follows (the logits' download) goes to the queue in the same submit.
class Captured {
 public:
  ~Captured();
  bool valid() const { return valid_; }

 private:
  friend class Recorder;
  explicit Captured(Recorder& rec) : rec_(&rec) {}
  Recorder* rec_;  // null once the recorder is gone (its destructor freed the commands)
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorPool> desc_pools_;
  std::vector<VkBuffer> uses_;  // sorted
  bool valid_ = true;
  bool fold_ = true;
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
  // A download that does not wait (async_download.cpp): the copy of `bytes` (at most
  // kSlotBytes) goes into a slot of a host-visible ring after the work enqueued so far, and its
  // batch is submitted without waiting. download_wait waits for that batch's fence only (frames
  // complete in submit order: later batches stay in flight), then copies the slot out. Tickets
  // are waited for in start order, each once; at most kSlots outstanding.
  static constexpr size_t kSlotBytes = 256, kSlots = 256;
  uint64_t download_start(VulkanBuffer& src, size_t offset, size_t bytes);
  void download_wait(uint64_t ticket, void* dst);
  size_t downloads_outstanding() const { return tickets_.size(); }
  // Keeps a buffer alive until the work enqueued so far has run.
  void retire(std::unique_ptr<VulkanBuffer> buf);

  void submit();  // hands the current batch to the queue, does not wait
  void finish();  // submit + wait for everything; reports validation messages

  // Capture (recording.cpp): dispatches between begin and end go into a command buffer kept for
  // replay instead of a batch; upload / download / submit / finish throw meanwhile.
  void begin_capture();
  std::unique_ptr<Captured> end_capture();
  void abort_capture();  // after an exception between begin and end
  bool capturing() const { return capturing_; }
  // Enqueues the captured commands after the work recorded so far and submits (no wait).
  // Folded (DM_VULKAN_REPLAY_FOLD=1 while recording): the batch stays open instead and commands
  // enqueued next go into a third command buffer of the same submit (a decode step's logits
  // download: one vkQueueSubmit and one fence per token instead of two, but the device starts
  // the step only at the next submit, after the host's work in between).
  void replay(Captured& c);

  void set_profiling(bool on);
  bool profiling() const { return profiling_; }
  // Profile rows per kernel and grid ("gemm.coopmat_t32 1x16x8"): one row per shape
  // (DM_VULKAN_PROFILE, vulkan_backend.cpp).
  void set_profile_grid(bool on) { profile_grid_ = on; }
  std::vector<KernelTime> profile() const;  // completed batches only; call after finish()
  void reset_profile() { times_.clear(); }
  const RecorderStats& stats() const { return stats_; }
  uint32_t fence_spin_us() const { return fence_spin_us_; }
  static bool overlap_for_test(const BufferUse& a, const BufferUse& b);

 private:
  friend class Captured;
  struct Frame {
    VkCommandPool pool = VK_NULL_HANDLE;
    VkCommandBuffer cmd = VK_NULL_HANDLE;   // the one being recorded into
    VkCommandBuffer tail = VK_NULL_HANDLE;  // a Captured command buffer submitted after cmd
    // A folded replay (replay()): head is the ended first buffer, cmd then post, the third:
    // the submit is head, tail, post. post is allocated from pool once and reused.
    VkCommandBuffer head = VK_NULL_HANDLE, post = VK_NULL_HANDLE;
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
    uint64_t serial = 0;  // its submit's number (submitted_), once submitted
  };
  struct Access {
    VkBuffer buf;
    VkDeviceSize begin, end;  // hull
    VkDeviceSize rows, row_bytes, stride;
    bool write;
    bool transfer = false;  // a copy (transfer stage), else a dispatch (compute shader stage)
  };
  static bool overlap(const Access& a, const Access& b);

  Frame& current();  // begins a batch when none is being recorded
  void recycle(Frame& f);
  void wait_fence(VkFence fence);  // poll first (fence_spin_us_), then block
  void wait_submitted(uint64_t serial);  // until the batch of that submit has run
  void free_now(VkBuffer b, VkDeviceMemory m);  // after its fence: read timestamps, free per-batch objects
  // Inserts a barrier when an access overlaps a pending one (the accesses are all copies or all
  // dispatches), then adds them to the pending set.
  void track(const std::vector<Access>& accesses);
  void barrier(VkPipelineStageFlags src_stage, VkAccessFlags src_access,
               VkPipelineStageFlags dst_stage, VkAccessFlags dst_access);
  void full_barrier();
  VkDescriptorSet allocate_set(Frame& f, VkDescriptorSetLayout layout);
  void check_messages();

  void not_capturing(const char* op) const;
  // A command pool with these flags and one primary command buffer from it, into f.
  void create_command_buffer(Frame& f, VkCommandPoolCreateFlags flags) const;
  void buffer_freed(VkBuffer b);  // invalidates the captures that bind it
  void release_captures();        // frees the live captures' Vulkan objects (destructor)

  Context& ctx_;
  bool capturing_ = false;             // recording_ is then the frame being captured
  std::vector<Access> saved_pending_;  // the hazard state of the queue, kept across a capture
  std::vector<VkBuffer> capture_uses_;
  std::vector<Captured*> captures_;   // alive
  std::unique_ptr<Frame> recording_;
  std::deque<std::unique_ptr<Frame>> in_flight_;
  std::vector<std::unique_ptr<Frame>> free_;
  std::vector<Access> pending_;
  // A barrier triggered by a dispatch waits only for the stages of the pending accesses and
  // blocks only compute shaders (see track()). The accesses it retires are then not ordered
  // before later copies: copies_unordered_ says a copy must first get a full barrier.
  bool copies_unordered_ = false, saved_copies_unordered_ = false;
  bool wide_barriers_ = false;  // DM_VULKAN_BARRIERS=wide: every barrier full, as before
  uint32_t fence_spin_us_ = 0;  // 5000 on a discrete GPU; DM_VULKAN_FENCE_SPIN_US (wait_fence)
  std::unique_ptr<VulkanBuffer> readback_;
  // Submits are numbered 1, 2, ...; completed_: the highest whose fence was seen signalled.
  uint64_t submitted_ = 0, completed_ = 0;
  struct Ticket {
    uint64_t id, serial;  // serial: the submit that carries its copy
    size_t slot, bytes;
  };
  std::deque<Ticket> tickets_;  // started, not yet waited for; oldest first
  std::unique_ptr<VulkanBuffer> ring_;  // kSlots × kSlotBytes, host-visible (BufferKind::Readback)
  uint64_t next_ticket_ = 1;
  size_t next_slot_ = 0;
  bool profiling_ = false, profile_grid_ = false;
  std::map<std::string, KernelTime> times_;
  RecorderStats stats_;
};

}  // namespace dm::vk
