// Where byte `col` of INT8 row `row` lies in a K-major wgmma tile of `rows` rows of head dim kD
// (the sm90 kernel's Q rows in shared memory, its K tiles in the workspace): rows of kD bytes with
// the kD-byte swizzle for kD = 64 or 128 (16-byte chunk c of row r at c ^ ((r / 2) % 4), resp.
// c ^ (r % 8): the hardware XORs address bits 7-8, resp. 7-9, into bits 4-5, resp. 4-6); at kD = 256
// a row is wider than the widest swizzle, so the tile is two panels of 128-byte rows (bytes 0-127
// of every row, then bytes 128-255), each a 128-byte-swizzled K-major tile of its own.
#pragma once

namespace sageattn {

template <int kD>
struct SwizzledRows {
  static_assert(kD == 64 || kD == 128 || kD == 256, "sm90 head dims");
  static constexpr int kRowBytes = kD < 128 ? kD : 128;  // bytes per row of one panel
  static constexpr int kPanels = kD / kRowBytes;
  // The 16-byte chunk index that chunk c of row `row` is XORed with inside its panel.
  template <typename I>
  __host__ __device__ static constexpr int swizzle(I row) {
    return kRowBytes == 128 ? static_cast<int>(row % 8) : static_cast<int>(row / 2 % 4);
  }
  // Where 16-byte chunk `chunk` (0 .. kD / 16 - 1) of row `row` starts. Tiles of `rows` rows (a
  // multiple of 8) follow each other: `row` may lie past the first. I is int64_t where the byte
  // offset may pass 2^31 (workspace rows).
  template <typename I>
  __host__ __device__ static constexpr I chunk_offset(int rows, I row, int chunk) {
    const int swizzle = SwizzledRows::swizzle(row);
    if constexpr (kPanels == 1) {
      return row * kRowBytes + (chunk ^ swizzle) * 16;
    } else {
      constexpr int kChunksPerPanel = kRowBytes / 16;
      const I tile = row / rows;
      return tile * rows * kD + (chunk / kChunksPerPanel) * rows * kRowBytes + (row - tile * rows) * kRowBytes +
             ((chunk % kChunksPerPanel) ^ swizzle) * 16;
    }
  }
  // Where byte `col` of row `row` lies.
  template <typename I>
  __host__ __device__ static constexpr I offset(int rows, I row, int col) {
    return chunk_offset(rows, row, col / 16) + col % 16;
  }
};

}  // namespace sageattn
