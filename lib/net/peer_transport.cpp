#include "lib/net/peer_transport.h"
