#include "core/tensor.h"

namespace dm {

std::string Tensor::describe() const {
  return "(" + std::to_string(rows) + " x " + std::to_string(cols) + ", stride " +
         std::to_string(row_stride) + ", " + std::string(dtype_name(dtype)) + ")";
}

}  // namespace dm
