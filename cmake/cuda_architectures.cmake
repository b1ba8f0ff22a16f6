# Turns the two user-facing choices into the library's CUDA_ARCHITECTURES:
#   SAGEATTN_CUDA_ARCHS    the GPUs that get machine code (SASS), e.g. "80;86;89;90a";
#   SAGEATTN_CUDA_PTX_ARCH the one PTX embedded for GPUs newer than all of them.
# Result: SAGEATTN_CUDA_ARCHITECTURES, e.g. "80-real;86-real;89-real;90a-real;90-virtual".
#
# Why SASS only for the listed targets: CMake's plain "80" means SASS *and* compute_80 PTX, so four
# plain targets embed four PTX copies that no listed GPU ever loads (each runs its own SASS) and
# that only make the wheel bigger.
#
# Why one PTX, and why of a plain target: the driver JIT-compiles PTX for GPUs that have no SASS
# in the binary (Blackwell sm_100/sm_120 and later), once, into its compute cache. PTX of an
# arch-specific target ("a", e.g. compute_90a, which may hold wgmma/setmaxnreg) is accepted only by
# that exact architecture, and of a family target ("f") only by that family, so it would run
# nowhere a listed SASS does not already. "auto" therefore takes the newest listed target without
# its suffix (90a -> compute_90): the portable kernels compiled with every feature that is not
# arch-specific. Costs one more device front-end pass per portable source when the newest target
# has a suffix; "none" skips it (development builds for one GPU).

set(SAGEATTN_CUDA_PTX_ARCH "auto" CACHE STRING
    "PTX target for GPUs newer than SAGEATTN_CUDA_ARCHS: auto (newest listed target without its a/f suffix), a number such as 90, or none")

set(SAGEATTN_CUDA_ARCHITECTURES "")
set(_sageattn_newest_plain 0)
foreach(_sageattn_arch IN LISTS SAGEATTN_CUDA_ARCHS)
  # Suffixes such as -real/-virtual are refused rather than passed through: this list is also the
  # library's sageattn_compiled_archs() string, and PTX has its own option.
  if(NOT _sageattn_arch MATCHES "^([0-9]+)([af]?)$")
    message(FATAL_ERROR
      "SAGEATTN_CUDA_ARCHS entry '${_sageattn_arch}' is not a compute capability such as 80, 90a "
      "or 100f. Each entry gets SASS only; choose the PTX target with SAGEATTN_CUDA_PTX_ARCH.")
  endif()
  list(APPEND SAGEATTN_CUDA_ARCHITECTURES "${_sageattn_arch}-real")
  if(CMAKE_MATCH_1 GREATER _sageattn_newest_plain)
    set(_sageattn_newest_plain "${CMAKE_MATCH_1}")
  endif()
endforeach()
if(NOT SAGEATTN_CUDA_ARCHITECTURES)
  message(FATAL_ERROR "SAGEATTN_CUDA_ARCHS is empty: name at least one target such as 80")
endif()

if(SAGEATTN_CUDA_PTX_ARCH STREQUAL "auto")
  list(APPEND SAGEATTN_CUDA_ARCHITECTURES "${_sageattn_newest_plain}-virtual")
elseif(SAGEATTN_CUDA_PTX_ARCH MATCHES "^[0-9]+$")
  list(APPEND SAGEATTN_CUDA_ARCHITECTURES "${SAGEATTN_CUDA_PTX_ARCH}-virtual")
elseif(NOT SAGEATTN_CUDA_PTX_ARCH STREQUAL "none")
  message(FATAL_ERROR
    "SAGEATTN_CUDA_PTX_ARCH='${SAGEATTN_CUDA_PTX_ARCH}': use auto, none or a plain compute "
    "capability such as 90 (PTX of an a/f target runs on no GPU that lacks its SASS).")
endif()
message(STATUS "sageattn CUDA architectures: ${SAGEATTN_CUDA_ARCHITECTURES}")
