// Validation of sageattn_params: every rule a call must satisfy, with a reason a user can act on.
#pragma once
#include <string>

#include "sageattn/sageattn.h"

namespace sageattn {

// `sm_arch` is the resolved compute capability (major*10+minor) of the device that will run the
// call. Returns OK, or the status and (in `reason`) why the call cannot run.
sageattn_status check_params(const sageattn_params& params, int sm_arch, std::string& reason);

}  // namespace sageattn
