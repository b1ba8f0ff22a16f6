// What the attention kernels do with one 128-row x 128-key tile (docs/design/masks.md). Host and
// device share these values: the mask pass writes them, a block mask (0 / nonzero) is read as them.
#pragma once
#include <cstdint>

namespace sageattn {

constexpr int kMaskBlock = 128;  // = SAGEATTN_BLOCK_MASK_TILE: rows and keys per code
constexpr uint8_t kTileSkip = 0;         // every score masked: never loaded, never computed
constexpr uint8_t kTilePlain = 1;        // no element mask inside (is_causal and bounds still apply)
constexpr uint8_t kTileElementMask = 2;  // the element mask applies score by score
constexpr float kMaxMaskValue = 1e30f;   // larger additive mask values count as this

}  // namespace sageattn
