// Which instruction set the CPU GEMM uses. The build targets plain x86-64, so faster code is
// compiled per function (target attributes) and picked at run time.
#pragma once

#include <string>

namespace dm {

enum class CpuIsa {
  generic,  // plain C++ loops: any CPU
  avx2,     // AVX2 + FMA + F16C (x86-64 since ~2013)
};

// The best instruction set this CPU runs.
CpuIsa best_cpu_isa();
// False when the CPU lacks the instructions (so a test can skip instead of crashing).
bool cpu_supports(CpuIsa isa);
std::string cpu_isa_name(CpuIsa isa);

}  // namespace dm
