// The mask pass: one launch that reads an element mask once and writes the TileCode of every
// 128 x 128 tile (skip / plain / element mask), folding in a block mask when one is given.
#pragma once
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// `dtype` is the dtype of q: the element type of an additive mask.
cudaError_t launch_classify_tiles(const MaskTileArgs& args, sageattn_dtype dtype, cudaStream_t stream);

}  // namespace sageattn
