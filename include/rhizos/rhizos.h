/* rhizos/rhizos.h — the whole public API of librhizos. */
#ifndef RHIZOS_H
#define RHIZOS_H

#include "rhizos/common.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/plan.h"
#include "rhizos/run.h"
#include "rhizos/exec.h"
#include "rhizos/store.h"
#include "rhizos/hw.h"
#include "rhizos/match.h"
#include "rhizos/vault.h"
#include "rhizos/ledger.h"
#include "rhizos/auth.h"
#include "rhizos/schema.h"
#include "rhizos/estimate.h"
#include "rhizos/engine.h"
#include "rhizos/client.h"
#include "rhizos/trigger.h"

#endif /* RHIZOS_H */
