# Convergence meter kernels: shared declarations (see _meter.pyx).

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "ctas7/meter.h" nogil:
    void ctas7_meter_transform(const float* x, float* y, Py_ssize_t n, int anscombe)
    void ctas7_meter_transform_avx(const float* x, float* y, Py_ssize_t n, int anscombe)

    ctypedef struct ctas7_meter_series_cfg:
        float alpha
        float outlier_sigma
        uint32_t min_samples
        int transform
        double var_floor
        double poisson_floor
        double smoothing
        double smooth_norm
        int detector
        int cusum_variance
        double cusum_k
        double cusum_cap

    ctypedef struct ctas7_meter_series_state:
        float mean
        float var
        uint32_t count
        float zsm
        float cup
        float cdn
        float cvr

    Py_ssize_t ctas7_meter_series_step(const ctas7_meter_series_cfg* cfg, ctas7_meter_series_state* st,
                                       const float* y, Py_ssize_t n, float* mb, float* vb,
                                       const double* zr, Py_ssize_t nc, float* z, float* s)
    void ctas7_meter_series_residual(const float* y, const float* mb, const float* vb, Py_ssize_t n,
                                     double pf, double vf, int tr, double* zr)
    void ctas7_meter_series_residual_avx(const float* y, const float* mb, const float* vb, Py_ssize_t n,
                                          double pf, double vf, int tr, double* zr)
    int CTAS7_METER_HAVE_AVX

    enum:
        CTAS7_ROW_RAW
        CTAS7_ROW_CRAW
        CTAS7_ROW_CUP
        CTAS7_ROW_DPOS
        CTAS7_ROW_DNEG
        CTAS7_ROW_WARM

    ctypedef struct ctas7_meter_row_cfg:
        uint32_t min_samples
        int transform
        int common_mode
        int detector
        int cusum_variance
        double var_floor
        double poisson_floor
        double smoothing
        double smooth_norm
        double cusum_k

    ctypedef struct ctas7_meter_row:
        const float* y
        const double* fac
        const float* mean
        const float* var
        const uint32_t* count
        const double* hthr
        const double* z2thr
        float* upd
        float* cup
        float* cdn
        float* cvr
        float* zsm
        double* z2
        uint8_t* flags
        double* zr

    void ctas7_meter_row_scalar(const ctas7_meter_row_cfg* cfg, const ctas7_meter_row* r, Py_ssize_t n)
    void ctas7_meter_row_avx2(const ctas7_meter_row_cfg* cfg, const ctas7_meter_row* r, Py_ssize_t n)
    int CTAS7_METER_HAVE_ROW_AVX2
    void ctas7_meter_row_avx512(const ctas7_meter_row_cfg* cfg, const ctas7_meter_row* r, Py_ssize_t n)
    int CTAS7_METER_HAVE_ROW_AVX512
    void ctas7_meter_hist(const uint8_t* flags, uint32_t* hist, Py_ssize_t n, uint32_t mask)
    double ctas7_meter_cusum_bits(double s, double k)
    void ctas7_meter_cusum_scores(const float* s, Py_ssize_t n, double k, double h0, double offset, float* out)
    void ctas7_meter_cusum_scores_avx2(const float* s, Py_ssize_t n, double k, double h0, double offset, float* out)
    Py_ssize_t ctas7_meter_busy(const uint32_t* hist, Py_ssize_t n, int32_t* idx)


from ctas7._core._events cimport event_t as meter_event_t


# Scalar parameters, already transformed for the hot loop (z thresholds
# squared, persistence mask, decay table).
ctypedef struct meter_cfg_t:
    int64_t tick_ns
    float alpha
    uint32_t min_samples
    float outlier_sigma
    double var_floor
    double poisson_floor
    double z2_hot
    double z2_investigate
    uint32_t persist_m
    uint32_t persist_mask
    uint32_t min_state_ticks
    double min_hot_nodes
    double convergence_threshold
    int64_t window_ticks
    double half_life
    double decay[256]    # 2**(-age / half_life) for age < 256
    int transform        # 0: raw counts, 1: Anscombe 2*sqrt(x + 3/8)
    int common_mode      # 0: off, 1: global median ratio, 2: per-group median ratio
    uint32_t min_groups  # distinct groups among the dominant-direction hot nodes
    double family_correction  # bits added per log2(nodes tracked)
    double pattern_bonus      # bits per TETH pattern match in the window
    double corroboration_bonus  # bits per corroboration match in the window
    double corroboration_weight  # window weight factor of a node with a corroboration in the window
    int64_t corroboration_ticks  # ticks a corroboration counts for its node (its own window)
    int refire_new_nodes  # 1: while converged, fire again when nodes outside the last firing reach the quorum
    int use_matches       # 1: TETH matches can change anything (a bonus, or the corroboration weight)
    double score_threshold    # bits (before the family correction)
    double smoothing          # EWMA factor of the standardised residual (1: none)
    double smooth_norm        # 1 / sd of the smoothed residual under the null
    int detector              # 0: surprisal, 1: CUSUM, 2: either
    double cusum_k            # CUSUM reference value (sd units)
    double cusum_offset       # bits added to a node's threshold for its CUSUM
    int cusum_variance        # 1: also a CUSUM of the squared residual (variance up)
    double cusum_h            # CUSUM decision interval of score_threshold + cusum_offset bits
    double cusum_h0           # CUSUM value whose score is cusum_offset bits (score_series: score >= 0)

# Sparse per-node overrides, densified whenever the node arrays grow.
ctypedef struct meter_over_t:
    const int64_t* thr_nodes
    const double* thr_z2
    const double* thr_z2inv
    const double* thr_bits
    Py_ssize_t n_thr
    const int64_t* w_nodes
    const double* w_values
    Py_ssize_t n_w
    const int32_t* groups
    Py_ssize_t n_groups_arr

# Per-node state plus the convergence window. Arrays have `cap` entries.
ctypedef struct meter_state_t:
    Py_ssize_t n          # nodes in use
    Py_ssize_t cap
    int track             # 1: streaming (states, z, snapshots); 0: alarms only
    int64_t n_closed      # ticks closed so far
    int64_t last_fire     # tick of the last firing (refire_new_nodes)
    int64_t open_tick
    int started
    int prev_converged
    uint64_t late_events
    uint64_t skipped_ticks
    # baseline
    float* mean
    float* var
    uint32_t* count
    # open-tick accumulator (streaming)
    float* acc
    # hotness and window
    uint32_t* hist
    int64_t* last_hot
    int64_t* first_hot
    int8_t* hot_dir
    uint8_t* hot
    uint8_t* fmark        # member of the last firing: 1 on activity, 2 on evidence alone (refire_new_nodes)
    float* hot_z
    float* last_z
    # state machine (streaming)
    uint8_t* state
    uint32_t* state_age
    float* x1
    float* x2
    # per-node parameters
    double* z2thr
    double* z2inv
    double* thrbits       # effective threshold in bits (pattern bonus test)
    Py_ssize_t corr_n     # nodes the family correction was computed for
    # common mode: scratch ratios, per-node factor, per-group bucketing
    double* cm_buf
    double* cm_fac
    int32_t* cm_gcount
    int32_t* cm_gstart
    float* upd            # the row the baselines take in (transformed, de-common-moded)
    float* ybuf           # this tick's scored values
    double* z2            # this tick's z^2 per node (ctas7_meter_row)
    double* zrow          # scratch: this tick's standardised residuals (ctas7_meter_row)
    uint8_t* flags        # this tick's CTAS7_ROW_* flags per node
    int32_t* busy         # scratch: nodes with non-zero persistence bits
    float* zsm            # smoothed standardised residual
    float* cup            # one-sided CUSUMs of the standardised residual (up / down)
    float* cdn
    float* cvr            # CUSUM of (min(z^2, 16) - 1) / sqrt(2) (variance excess)
    double* hthr          # CUSUM decision interval per node
    # TETH matches (streaming): per-node count in the window and a tick-sorted queue
    uint32_t* mwin        # pattern matches per node in the window (pattern bonus)
    uint32_t* cwin        # corroboration matches per node in the window (corroboration bonus)
    int64_t* ctick        # tick of the node's latest corroboration match (refire_new_nodes)
    int use_mwin          # 1: mwin/cwin are allocated and read (streaming, or evaluate_activity with evidence)
    int64_t* mq_tick
    int32_t* mq_node
    uint8_t* mq_src       # 0: pattern match, 1: corroboration match
    Py_ssize_t mq_len
    Py_ssize_t mq_cap
    Py_ssize_t mq_in      # entries before mq_in have entered their node's count
    Py_ssize_t mq_out     # pattern matches before mq_out have left the window
    Py_ssize_t mq_cout    # corroborations before mq_cout have left theirs (corroboration_ticks)
    double* weight
    int32_t* group
    # active (in-window) node list
    int32_t* active
    Py_ssize_t n_active
    # per-group sums for the confidence
    Py_ssize_t n_groups
    double* gpos
    double* gneg
    int32_t* gtouched
    uint8_t* gmark
    # last tick's window summary
    double last_count
    double last_confidence
    # fired snapshots (streaming)
    Py_ssize_t n_fired
    Py_ssize_t fired_cap
    int64_t* fired_tick
    double* fired_count
    double* fired_conf
    int64_t* fired_off
    Py_ssize_t n_snap
    Py_ssize_t snap_cap
    int32_t* snap_node
    int64_t* snap_first
    float* snap_z
    int8_t* snap_dir


cdef class MeterConfig:
    cdef meter_cfg_t cfg
    cdef object kwargs
    cdef object thr_nodes       # int64 node ids with a threshold override
    cdef object thr_z2          # float64 z^2 (hot) per override
    cdef object thr_z2inv       # float64 z^2 (investigate) per override
    cdef object thr_bits        # float64 bits per override
    cdef object w_nodes         # int64 node ids with a weight
    cdef object w_values        # float64 weights


cdef class MeterCore:
    cdef meter_state_t st
    cdef readonly MeterConfig config
    cdef object groups_arr      # int32 node -> group (nodes past its end: group 0)
    cdef meter_over_t over
    cdef readonly int64_t max_gap_ticks
    cdef readonly uint32_t max_nodes
    cdef void* _ptr(self, str name) except NULL
    cdef _push_fired(self, int64_t t, double cnt, double conf, nodes, first, hz, dirs)


cdef double z_of_bits(double bits) noexcept nogil
cdef double cusum_bits(double s, double k) noexcept nogil
cdef double cusum_h_of_bits(double bits, double k) noexcept nogil
cdef double bits_of_z(double z) noexcept nogil
cdef double quickselect_median(double* a, Py_ssize_t n) noexcept nogil
cdef uint32_t popcount32(uint32_t v) noexcept nogil
