#include "backend/profile_table.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace dm {

std::string format_profile_table(const std::vector<ProfileRow>& rows) {
  double total = 0;
  for (const ProfileRow& r : rows) total += r.total_us;
  std::ostringstream os;
  os << std::left << std::setw(28) << "kernel" << std::right << std::setw(10) << "calls"
     << std::setw(14) << "total ms" << std::setw(12) << "avg us" << std::setw(8) << "%"
     << "\n";
  for (const ProfileRow& r : rows)
    os << std::left << std::setw(28) << r.kernel << std::right << std::setw(10) << r.calls
       << std::setw(14) << std::fixed << std::setprecision(3) << r.total_us / 1e3 << std::setw(12)
       << std::setprecision(1) << r.total_us / double(std::max<uint64_t>(1, r.calls))
       << std::setw(8) << std::setprecision(1) << (total > 0 ? 100.0 * r.total_us / total : 0.0)
       << "\n";
  return os.str();
}

}  // namespace dm
