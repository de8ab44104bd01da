#include "lib/net/pki.h"
