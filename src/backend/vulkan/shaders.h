// The SPIR-V of shaders/*.comp, embedded at build time by cmake/vulkan.cmake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dm::vk {

struct EmbeddedShader {
  const char* name;  // file name without .comp, the same as the Backend method
  const uint32_t* words;
  size_t n_words;
};

// nullptr when no shader of that name was compiled in.
const EmbeddedShader* find_shader(std::string_view name);

}  // namespace dm::vk
