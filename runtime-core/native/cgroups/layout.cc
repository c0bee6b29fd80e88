#include "cgroups/cgroups.h"
