// The --profile table both GPU backends print: one row per kernel (Vulkan) or Backend call
// (CUDA), its count, total and mean device time and share of the total.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dm {

struct ProfileRow {
  std::string kernel;
  uint64_t calls = 0;
  double total_us = 0;
};

std::string format_profile_table(const std::vector<ProfileRow>& rows);

}  // namespace dm
