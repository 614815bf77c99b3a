// Host emulation stand-in for <cooperative_groups.h> (see ../emu_cuda.h).
#pragma once
#include "../emu_cuda.h"
