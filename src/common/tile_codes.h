// What the attention kernels do with one 128-row x 128-key tile (docs/design/masks.md). Host and
// device share these values: the mask pass writes them, a block mask (0 / nonzero) is read as them.
#pragma once
#include <cstdint>

namespace sageattn {

constexpr int kMaskBlock = 128;  // = SAGEATTN_BLOCK_MASK_TILE: rows and keys per code
constexpr uint8_t kTileSkip = 0;         // every score masked: never loaded, never computed
constexpr uint8_t kTilePlain = 1;        // no element mask inside (is_causal and bounds still apply)
constexpr uint8_t kTileElementMask = 2;  // the element mask applies score by score
// Additive mask values above this count as it; values at or below its negative (and NaN) mask the
// key. Without the lower rule finfo(bf16).min, the masking value of Hugging Face models, would
// overflow to -inf once scaled by log2(e) in the kernels while the mask pass still counted it as a
// kept key (no tile skipped, and a row of it gave zeros where the rule said finite).
constexpr float kMaxMaskValue = 1e30f;

}  // namespace sageattn
