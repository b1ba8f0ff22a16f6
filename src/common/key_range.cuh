// Which key tiles a block of query rows visits, and from which tile on it needs masking. Shared by
// the sm80 and sm90 kernels (they differ only in tile sizes).
#pragma once
#include <cstdint>

namespace sageattn {

struct KeyRange {
  int tiles;           // tiles [0, tiles) hold at least one allowed key for some row of the block
  int unmasked_tiles;  // tiles [0, unmasked_tiles) are allowed for every row of the block
};

// all_tiles = ceil(seqlen_kv / kKeyTile), passed in because the kernels already hold it.
template <bool kCausal, int kQRows, int kKeyTile>
__device__ __forceinline__ KeyRange key_range(int seqlen_q, int seqlen_kv, int all_tiles, int q_start) {
  const int full_tiles = seqlen_kv / kKeyTile;
  if (!kCausal) return {all_tiles, full_tiles};
  // Bottom-right alignment: row i may see keys j <= i + (seqlen_kv - seqlen_q).
  const int64_t shift = static_cast<int64_t>(seqlen_kv) - seqlen_q;
  const int q_end = min(q_start + kQRows, seqlen_q);
  const int64_t last_key = q_end - 1 + shift;
  const int64_t needed = last_key / kKeyTile + 1;
  const int tiles = last_key < 0 ? 0 : static_cast<int>(needed < all_tiles ? needed : all_tiles);
  const int64_t first_row_keys = q_start + shift + 1;  // keys visible to the block's first row
  const int64_t whole = first_row_keys / kKeyTile;
  const int unmasked = first_row_keys <= 0 ? 0 : static_cast<int>(whole < full_tiles ? whole : full_tiles);
  return {tiles, min(unmasked, tiles)};
}

}  // namespace sageattn
