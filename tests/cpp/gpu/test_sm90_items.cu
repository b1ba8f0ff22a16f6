// The sm90 kernel's split items (src/sm90/kernel.cuh), on the host: every query row belongs to
// exactly one consumer group of exactly one item, whatever the number of 128-row Q blocks and the
// length of the last one. A row no group owns would be left unwritten (its output uninitialized);
// a row two groups own would be written twice with different key ranges. Host code only: runs
// without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "sm90/kernel.cuh"

namespace {

using sageattn::AttentionArgs;
using sageattn::sm90::row_blocks;
using sageattn::sm90::split_group_row0;

TEST(Sm90SplitItems, EveryQueryRowBelongsToExactlyOneGroup) {
  for (int seqlen_q = 1; seqlen_q <= 128 * 13 + 1; seqlen_q += 37) {
    AttentionArgs a{};
    a.seqlen_q = seqlen_q;
    a.q_blocks = (seqlen_q + 127) / 128;
    const int items = row_blocks<192, true>(a);
    EXPECT_EQ(items, 2 * ((a.q_blocks + 2) / 3)) << "seqlen_q " << seqlen_q;
    std::vector<int> owners(seqlen_q, 0);
    for (int item = 0; item < items; ++item) {
      for (int group = 0; group < 2; ++group) {
        const int row0 = split_group_row0(item, group);
        const int rows = group == 0 ? 128 : 64;
        EXPECT_EQ(row0 % 64, 0) << "a consumer's rows start on a 64-row boundary";
        if (group == 0) {
          EXPECT_EQ(row0 % 128, 0) << "group 0 holds a whole Q block";
        } else {
          EXPECT_EQ(row0 / 128, (row0 + rows - 1) / 128) << "group 1's rows lie in one Q block";
        }
        for (int row = row0; row < row0 + rows && row < seqlen_q; ++row) ++owners[row];
      }
    }
    for (int row = 0; row < seqlen_q; ++row)
      ASSERT_EQ(owners[row], 1) << "row " << row << " of seqlen_q " << seqlen_q;
  }
}

TEST(Sm90SplitItems, DenseItemsAreUnchanged) {
  AttentionArgs a{};
  a.seqlen_q = 1000;
  a.q_blocks = 8;
  EXPECT_EQ((row_blocks<192, false>(a)), 6);  // ceil(1000 / 192)
  EXPECT_EQ((row_blocks<128, false>(a)), 8);
  EXPECT_EQ((row_blocks<192, true>(a)), 6);   // 2 * ceil(8 / 3)
}

}  // namespace
