// The decimation policy: K per layer is a pure host function (decimamba-spec.md §2.1).
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/decimation.h"

namespace dm {
namespace {

TEST(Decimation, Pg19ScheduleMatchesTheAuthorsNumbers) {
  const DecimationConfig cfg = decimation_preset("pg19-130m");
  const int64_t expected[] = {8000, 6640, 5511, 4574, 3796, 3151, 2615, 2170, 1801};
  // A long prompt with a protected tail of 1: each layer sees the previous layer's output.
  int64_t L = 60001;
  const int64_t r = 1;
  for (int l = 0; l < 24; ++l) {
    const int64_t K = decimation_keep(cfg, l, L, r);
    if (l >= 12 && l <= 20) {
      EXPECT_EQ(K, expected[l - 12]) << "layer " << l;
    } else {
      EXPECT_EQ(K, L - r) << "layer " << l << " does not decimate";
    }
    L = K + r;
  }
  // The schedule is an absolute cap: it does not depend on how long the prompt was.
  EXPECT_EQ(decimation_keep(cfg, 14, 1000000, 1), 5511);
}

TEST(Decimation, ShortPromptKeepsEverything) {
  const DecimationConfig cfg = decimation_preset("passkey-130m");
  EXPECT_EQ(decimation_keep(cfg, 12, 2001, 1), 2000);  // Lc == L_base: all kept
  EXPECT_EQ(decimation_keep(cfg, 12, 1500, 1), 1499);
  EXPECT_EQ(decimation_keep(cfg, 12, 2002, 1), 2000);  // one dropped
  EXPECT_EQ(decimation_keep(cfg, 11, 90000, 1), 89999);
}

TEST(Decimation, MinSeqLenFloorAndClamp) {
  DecimationConfig cfg;
  cfg.enabled = true;
  cfg.layers = {1, 2, 3};
  cfg.L_base = 50;
  cfg.beta = 0.1;
  cfg.min_seq_len = 20;
  EXPECT_EQ(decimation_keep(cfg, 1, 1000, 0), 50);
  EXPECT_EQ(decimation_keep(cfg, 2, 1000, 0), 20);  // 5 < min_seq_len
  EXPECT_EQ(decimation_keep(cfg, 3, 1000, 0), 20);
  // Fewer candidates than min_seq_len: the reference crashes in topk; we keep all.
  EXPECT_EQ(decimation_keep(cfg, 2, 15, 1), 14);
  EXPECT_EQ(decimation_keep(cfg, 2, 1, 1), 0);  // nothing but the tail
  EXPECT_EQ(decimation_keep(cfg, 2, 5, 10), 0);  // tail longer than the prompt
}

TEST(Decimation, TruncatesAfterTheMaxLikePython) {
  DecimationConfig cfg;
  cfg.enabled = true;
  cfg.layers = {0, 1};
  cfg.L_base = 100.9;
  cfg.beta = 0.55;
  EXPECT_EQ(decimation_keep(cfg, 0, 1000, 0), 100);  // int(100.9)
  EXPECT_EQ(decimation_keep(cfg, 1, 1000, 0), 55);   // int(55.495)
}

TEST(Decimation, OffKeepsEverything) {
  const DecimationConfig cfg = decimation_preset("off");
  EXPECT_EQ(decimation_keep(cfg, 12, 100000, 1), 99999);
}

TEST(Decimation, ValidationRejectsBadSettings) {
  DecimationConfig cfg = decimation_preset("pg19-130m");
  EXPECT_NO_THROW(validate_decimation(cfg, 24));
  EXPECT_THROW(validate_decimation(cfg, 16), Error);  // layer 20 does not exist
  cfg.layers = {13, 12};
  EXPECT_THROW(validate_decimation(cfg, 24), Error);
  cfg.layers = {12};
  cfg.beta = 0;
  EXPECT_THROW(validate_decimation(cfg, 24), Error);
  cfg.beta = 0.5;
  cfg.L_base = 0;
  EXPECT_THROW(validate_decimation(cfg, 24), Error);
  cfg.L_base = 10;
  cfg.layers.clear();
  EXPECT_THROW(validate_decimation(cfg, 24), Error);
  EXPECT_THROW(decimation_preset("nope"), Error);
}

}  // namespace
}  // namespace dm
