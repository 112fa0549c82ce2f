// Non-blocking small downloads on the recorder (Backend::download_start / download_wait): greedy
// decoding downloads each step's pick (4 bytes) while the next step is already queued. The copy
// goes into a slot of a small host-visible ring (coherent memory, BufferKind::Readback) at the
// end of the batch, followed by a transfer → host barrier, and the batch is submitted with its
// fence and not waited for. download_wait waits only for the frames up to that batch (they
// complete in submit order on the one queue), so the batches submitted after it stay in flight.
// A slot is reused only after its ticket was waited for (at most kSlots outstanding), and the
// copy's write into it is tracked like any copy, so the recorder orders a reuse after the last
// one on the device too.
#include <cstring>

#include "backend/vulkan/recorder.h"
#include "core/error.h"

namespace dm::vk {

uint64_t Recorder::download_start(VulkanBuffer& src, size_t offset, size_t bytes) {
  not_capturing("download_start");
  DM_ASSERT(offset <= src.bytes() && bytes <= src.bytes() - offset, "download_start of ", bytes,
            " bytes at ", offset, " past the end of a ", src.bytes(), "-byte buffer");
  if (bytes > kSlotBytes)
    fail("[vulkan] download_start: ", bytes, " bytes, at most ", kSlotBytes);
  if (tickets_.size() >= kSlots)
    fail("[vulkan] download_start: ", kSlots, " downloads started and not waited for; wait for "
         "the oldest first");
  Ticket t{next_ticket_, 0, next_slot_, bytes};
  if (bytes > 0) {
    if (!ring_) ring_ = std::make_unique<VulkanBuffer>(ctx_, kSlots * kSlotBytes, BufferKind::Readback);
    const VkDeviceSize at = VkDeviceSize(t.slot * kSlotBytes);
    Frame& f = current();
    track({{src.buffer, offset, offset + bytes, 1, bytes, 0, false, true},
           {ring_->buffer, at, at + bytes, 1, bytes, 0, true, true}});
    const VkBufferCopy region{offset, at, bytes};
    vkCmdCopyBuffer(f.cmd, src.buffer, ring_->buffer, 1, &region);
    ++stats_.copies;
    // The copy's writes visible to the host before the fence says the batch is done.
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(f.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                         &mb, 0, nullptr, 0, nullptr);
    next_slot_ = (next_slot_ + 1) % kSlots;
  }
  // Nothing recorded (bytes 0, nothing enqueued): the last submit already carries what the ticket
  // waits for.
  submit();
  t.serial = submitted_;
  tickets_.push_back(t);
  return next_ticket_++;
}

void Recorder::wait_submitted(uint64_t serial) {
  while (completed_ < serial) {
    DM_ASSERT(!in_flight_.empty(), "submit ", serial, " not done and none in flight");
    std::unique_ptr<Frame> f = std::move(in_flight_.front());
    in_flight_.pop_front();
    wait_fence(f->fence);
    recycle(*f);  // completed_ = its serial
    free_.push_back(std::move(f));
  }
}

void Recorder::download_wait(uint64_t ticket, void* dst) {
  if (tickets_.empty() || tickets_.front().id != ticket)
    fail("[vulkan] download_wait: ticket ", ticket,
         " is not the oldest download started and not waited for");
  const Ticket t = tickets_.front();
  wait_submitted(t.serial);
  tickets_.pop_front();
  if (t.bytes > 0)
    std::memcpy(dst, static_cast<const uint8_t*>(ring_->mapped) + t.slot * kSlotBytes, t.bytes);
  check_messages();  // as download's finish does
}

}  // namespace dm::vk
