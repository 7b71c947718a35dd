/* ctas7/slotgraph.h -- placement score of the SlotGraph (DESIGN section 5).
 *
 *   score = 0.4 * latency + 0.3 * capacity + 0.3 * capability, each in [0, 1]:
 *     latency    = 1 - latency_ms / max latency among the candidates
 *                  (1 when that maximum is 0);
 *     capacity   = (free - needed) / slots, the share left free after placing;
 *     capability = (1 + |needed caps|) / (1 + |station caps|), 1 for an exact fit.
 *
 * The three weighted terms go through volatile doubles so that a compiler
 * allowed to contract a*b + c into an FMA (-march with FMA) still rounds
 * exactly like the pure-Python reference: the score decides ties, so it
 * must be bit-identical.
 */
#ifndef CTAS7_SLOTGRAPH_H
#define CTAS7_SLOTGRAPH_H

#include <stdint.h>

static inline double ctas7_sg_score(double latency_ms, double max_latency_ms,
                                    int32_t free_slots, int32_t need_slots,
                                    int32_t slots, int32_t need_caps, int32_t have_caps)
{
    double lat = max_latency_ms > 0.0 ? 1.0 - latency_ms / max_latency_ms : 1.0;
    double cap = (double)(free_slots - need_slots) / (double)slots;
    double fit = (double)(1 + need_caps) / (double)(1 + have_caps);
    volatile double t_lat = 0.4 * lat;
    volatile double t_cap = 0.3 * cap;
    volatile double t_fit = 0.3 * fit;
    return (t_lat + t_cap) + t_fit;
}

static inline int ctas7_sg_popcount64(uint64_t v)
{
    return __builtin_popcountll(v);
}

#endif /* CTAS7_SLOTGRAPH_H */
