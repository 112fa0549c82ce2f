// Capture and replay on the recorder (Backend::record / replay): the dispatches of one decode
// step go into a command buffer of their own, recorded once with the barriers the recorder
// derives as usual, and submitted again per token after the frame that uploads the token id,
// in the same vkQueueSubmit. DM_VULKAN_REPLAY_FOLD=1 (while recording) also folds the commands
// enqueued after the replay (the logits' download) into that submit: one submit a token instead
// of two, but the step then starts only when the host downloads (measured no faster, sessions
// 11 and 19).
// A full barrier opens and closes the captured commands, so they are ordered against whatever
// the queue runs before and after them without the recorder tracking what they touch.
#include <algorithm>

#include "backend/vulkan/recorder.h"
#include "core/env.h"
#include "core/error.h"

namespace dm::vk {

void Recorder::not_capturing(const char* op) const {
  if (capturing_)
    fail("[vulkan] ", op, ": not allowed while a step is being recorded (write inputs before "
         "replay, read outputs after)");
}

void Recorder::create_command_buffer(Frame& f, VkCommandPoolCreateFlags flags) const {
  VkCommandPoolCreateInfo cp{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  cp.flags = flags;
  cp.queueFamilyIndex = ctx_.queue_family;
  VK_CHECK(vkCreateCommandPool(ctx_.device, &cp, nullptr, &f.pool));
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = f.pool;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VK_CHECK(vkAllocateCommandBuffers(ctx_.device, &ai, &f.cmd));
}

void Recorder::begin_capture() {
  not_capturing("record");
  submit();  // work enqueued so far (the token upload) goes to the queue as it is
  auto f = std::make_unique<Frame>();
  create_command_buffer(*f, 0);
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  // Up to kMaxInFlight frames may carry it at once.
  bi.flags = VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT;
  VK_CHECK(vkBeginCommandBuffer(f->cmd, &bi));
  recording_ = std::move(f);
  capturing_ = true;
  capture_uses_.clear();
  saved_pending_ = std::move(pending_);
  saved_copies_unordered_ = copies_unordered_;
  pending_.clear();
  full_barrier();  // after everything submitted before the replay
}

std::unique_ptr<Captured> Recorder::end_capture() {
  DM_ASSERT(capturing_ && recording_, "end_capture without begin_capture");
  full_barrier();  // before everything submitted after the replay
  std::unique_ptr<Frame> f = std::move(recording_);
  capturing_ = false;
  pending_ = std::move(saved_pending_);
  saved_pending_.clear();
  copies_unordered_ = saved_copies_unordered_;
  auto c = std::unique_ptr<Captured>(new Captured(*this));
  c->pool_ = f->pool;
  c->cmd_ = f->cmd;
  c->desc_pools_ = std::move(f->desc_pools);
  std::sort(capture_uses_.begin(), capture_uses_.end());
  capture_uses_.erase(std::unique(capture_uses_.begin(), capture_uses_.end()), capture_uses_.end());
  c->uses_ = std::move(capture_uses_);
  capture_uses_.clear();
  // Opt-in: the logits path slower folded at 2.8b, greedy no faster at four steps a recording
  // (H200, session 19; session 11: no faster; README "Decode kernels and measurements").
  c->fold_ = env_choice("vulkan", "DM_VULKAN_REPLAY_FOLD", {"0", "1"}) == 1;
  const VkResult r = vkEndCommandBuffer(c->cmd_);
  captures_.push_back(c.get());  // from here its destructor frees the pools
  VK_CHECK(r);
  return c;
}

void Recorder::abort_capture() {
  if (!capturing_) return;
  std::unique_ptr<Frame> f = std::move(recording_);
  capturing_ = false;
  pending_ = std::move(saved_pending_);
  saved_pending_.clear();
  copies_unordered_ = saved_copies_unordered_;
  capture_uses_.clear();
  if (!f) return;
  vkEndCommandBuffer(f->cmd);
  for (VkDescriptorPool p : f->desc_pools) vkDestroyDescriptorPool(ctx_.device, p, nullptr);
  vkDestroyCommandPool(ctx_.device, f->pool, nullptr);
}

void Recorder::replay(Captured& c) {
  not_capturing("replay");
  if (c.rec_ != this) fail("[vulkan] replay: the recording was not made by this backend");
  if (!c.valid_) fail("[vulkan] replay: a buffer the recording uses has been freed; record again");
  if (recording_ && recording_->tail) submit();  // a batch carries one replay
  Frame& f = current();
  f.tail = c.cmd_;
  if (c.fold_) {
    // Leave the batch open: what comes next (the step's logits download) is recorded into
    // post and runs after the tail in the same submit. The tail's closing full barrier orders
    // it (a pipeline barrier spans the command buffers of a submit, in their order), and the
    // timestamp queries, reset at the head of the batch, stay valid in post.
    VK_CHECK(vkEndCommandBuffer(f.cmd));
    f.head = f.cmd;
    if (!f.post) {
      VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
      ai.commandPool = f.pool;
      ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
      ai.commandBufferCount = 1;
      VK_CHECK(vkAllocateCommandBuffers(ctx_.device, &ai, &f.post));
    }
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    VK_CHECK(vkBeginCommandBuffer(f.post, &bi));
    f.cmd = f.post;
  } else {
    submit();
  }
  pending_.clear();  // the captured commands end with a full barrier
  copies_unordered_ = false;
}

void Recorder::buffer_freed(VkBuffer b) {
  for (Captured* c : captures_)
    if (std::binary_search(c->uses_.begin(), c->uses_.end(), b)) c->valid_ = false;
}

void Recorder::release_captures() {
  vkDeviceWaitIdle(ctx_.device);
  for (Captured* c : captures_) {
    for (VkDescriptorPool p : c->desc_pools_) vkDestroyDescriptorPool(ctx_.device, p, nullptr);
    if (c->pool_) vkDestroyCommandPool(ctx_.device, c->pool_, nullptr);
    c->desc_pools_.clear();
    c->pool_ = VK_NULL_HANDLE;
    c->cmd_ = VK_NULL_HANDLE;
    c->valid_ = false;
    c->rec_ = nullptr;
  }
  captures_.clear();
}

Captured::~Captured() {
  if (!rec_) return;
  Recorder& r = *rec_;
  // Frames in flight may still hold the command buffer.
  try {
    if (!r.capturing()) r.finish();
    else vkDeviceWaitIdle(r.ctx_.device);
  } catch (...) {
    vkDeviceWaitIdle(r.ctx_.device);
  }
  for (VkDescriptorPool p : desc_pools_) vkDestroyDescriptorPool(r.ctx_.device, p, nullptr);
  if (pool_) vkDestroyCommandPool(r.ctx_.device, pool_, nullptr);
  r.captures_.erase(std::remove(r.captures_.begin(), r.captures_.end(), this), r.captures_.end());
}

}  // namespace dm::vk
