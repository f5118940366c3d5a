# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The DTMF receiver's stages, compiled (``dtmf_receiver`` holds the specification, the limits and constants).

``ReceiverCore`` keeps a stream's history and runs stages 1-3 on each chunk (the Goertzel terms and block
energies in C, ``dtmf_simd.h``; the per-window classifier); ``SegmentJudge`` takes the decisions: stage 4
(``runs_and_segments``: runs, their edges, segments), the tone meter (stage 5), the checks of stage 6, and
purity with the harmonic comb over one ``rfft`` (scipy's pocketfft) per FFT size. Written with numpy
alone, a streamed digit took a few hundred small numpy calls, a microsecond each, and a digit every 100 ms
held the receiver to about 60x real time; here a chunk is one call and a decision a few.

Layout: spectra are complex64 (blocks, 8) in ``DTMF_FREQUENCIES_HZ`` order (four rows, four columns); a
digit's label is ``row * 4 + column`` (0-15); a run's tones are its row (0-3) and column (4-7) indices.
"""

from functools import lru_cache
from types import MemberDescriptorType

import numpy as np

from libc.math cimport INFINITY, M_PI, atan2, ceil, cos, fabs, floor, log10, rint, sin, sqrt, tan
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memmove, memset

from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF


#: The most points (rows times FFT size) of purity scratch a judge keeps per FFT size: a 4 s batch piece
#: dense with digits (40-80 rows of 768-2,048 points), about 1 MB (frames and spectra); more is allocated for the
#: call alone.
cdef Py_ssize_t SCRATCH_MAX_POINTS = 1 << 17
#: The most Hann windows (one per stretch length) a judge keeps; a stream of every length starts over.
cdef Py_ssize_t WINDOWS_KEPT = 256


cdef inline double _abs2(double complex z) noexcept nogil:
    return z.real * z.real + z.imag * z.imag


cdef inline double _angle(double complex z) noexcept nogil:
    return atan2(z.imag, z.real)


cdef inline bint _within_angle(double complex z, double limit_rad, double inside, double outside) noexcept nogil:
    """Whether ``|angle(z)| < limit_rad`` (under pi / 2), as ``atan2`` says, but with ``atan2`` only near the
    limit: right of the imaginary axis (finite), ``|imag| <= inside * real`` is inside and ``|imag| >= outside * real``
    outside, where ``inside`` and ``outside`` are the tangents of angles 1 % either side of the limit, far
    beyond any rounding; left of it is outside (beyond pi / 2). The stage 5 tone meter asks this of every
    phase turn."""
    cdef double across = fabs(z.imag)
    if 0.0 < z.real < INFINITY and across < INFINITY:
        if across <= inside * z.real:
            return True
        if across >= outside * z.real:
            return False
    elif z.real < 0.0:
        return False
    return fabs(atan2(z.imag, z.real)) < limit_rad


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    void PyObject_GC_UnTrack(void* o)
    ctypedef struct TypeAllocation "PyTypeObject":
        PyObject* (*tp_alloc)(TypeAllocation* type, Py_ssize_t items)


cdef extern from "dtmf_simd.h":
    void ivrsim_dft_terms(const float* samples, Py_ssize_t length, const float* basis, float* out) noexcept nogil
    void ivrsim_dft_terms_pair(const float* a, const float* b, Py_ssize_t length, const float* basis, float* out_a,
                               float* out_b) noexcept nogil
    double ivrsim_energy(const float* samples, Py_ssize_t length) noexcept nogil
    void ivrsim_power_prefix(const float* spectrum, Py_ssize_t bins, float* power, double* prefix) noexcept nogil
    void ivrsim_windowed(const float* samples, const float* window, Py_ssize_t length, float* out) noexcept nogil
    ctypedef struct ivrsim_comb_limits:
        double comb_lo_hz, comb_hi_hz, min_f0_hz, match_pct, wide_match_pct, call_progress_top_hz
        const double* call_progress_hz
        Py_ssize_t call_progress_count, max_row_harmonic
    ctypedef struct ivrsim_window_limits:
        double min_tone_energy, normal_twist, reverse_twist, relative_peak, share_scale, min_window_energy
    double ivrsim_band_power(const double* prefix, Py_ssize_t bins, double low_bins, double high_bins,
                             Py_ssize_t* count) noexcept nogil
    signed char ivrsim_classify(const float* earlier, const float* later, double energy, const float* rotation,
                                const ivrsim_window_limits* limits) noexcept nogil
    void ivrsim_comb(const double* prefix, Py_ssize_t bins, double bin_hz, double res_hz, double lobe_hz, double row_hz,
                     double col_hz, const ivrsim_comb_limits* limits, double* out) noexcept nogil



cdef inline void _dft_terms(const float* samples, Py_ssize_t length, const float[:, ::1] basis, float complex* out) noexcept nogil:
    """The DFT terms at the eight frequencies of ``basis`` (length, 16: cos and -sin interleaved)."""
    ivrsim_dft_terms(samples, length, &basis[0, 0], <float*>out)


cdef class WindowThresholds:
    """``WindowClassifier``'s thresholds, scaled to raw window energies; ``min_window_energy``: below it no
    tone can reach ``min_tone_energy`` (|Y|^2 <= W * energy for a window of W samples). Stage 3 itself is
    ``ivrsim_classify`` (``dtmf_simd.h``)."""

    cdef ivrsim_window_limits limits

    def __init__(self, double min_tone_energy, double normal_twist, double reverse_twist, double relative_peak,
                 double share_scale, double min_window_energy):
        self.limits.min_tone_energy = min_tone_energy
        self.limits.min_window_energy = min_window_energy
        self.limits.normal_twist = normal_twist
        self.limits.reverse_twist = reverse_twist
        self.limits.relative_peak = relative_peak
        self.limits.share_scale = share_scale


cdef Py_ssize_t _analyse_blocks(
    float[::1] samples,
    float[::1] energy,
    float complex[:, ::1] spectra,
    signed char[::1] labels,
    float complex[:, ::1] hann,
    Py_ssize_t m,
    Py_ssize_t position,
    Py_ssize_t count,
    const float[:, ::1] basis,
    const float[:, ::1] hann_basis,
    const float complex[::1] hop_rotation,
    WindowThresholds thresholds,
):
    """Stages 1-3 over half-blocks ``position .. count - 1`` of ``m`` samples (new, samples already stored).

    Each one's energy and Goertzel terms (``basis``: m x 16, cos and -sin interleaved) are stored; NaN or
    infinite samples are set to zero first (silence, not a crash). Every window the new half-blocks
    complete (from ``position - 1``) is labelled (stage 3), and each window that holds a digit gets its
    Hann-windowed terms (``hann_basis``: 2m x 16). Returns how many windows hold a digit.
    """
    cdef Py_ssize_t b, n, w, found = 0, waiting = -1
    cdef double e
    for b in range(position, count):
        e = ivrsim_energy(&samples[b * m], m)
        if not (e - e == 0.0):  # NaN or infinity in the block: silence, not a crash
            for n in range(b * m, (b + 1) * m):
                if not (samples[n] - samples[n] == 0.0):
                    samples[n] = 0.0
            e = ivrsim_energy(&samples[b * m], m)
        energy[b] = <float>e
    # (Two blocks, or two windows, at a time: see ``ivrsim_dft_terms_pair``.)
    b = position
    while b + 1 < count:
        ivrsim_dft_terms_pair(&samples[b * m], &samples[(b + 1) * m], m, &basis[0, 0], <float*>&spectra[b, 0], <float*>&spectra[b + 1, 0])
        b += 2
    if b < count:
        _dft_terms(&samples[b * m], m, basis, &spectra[b, 0])
    for w in range(max(position - 1, 0), count - 1):
        labels[w] = ivrsim_classify(
            <const float*>&spectra[w, 0], <const float*>&spectra[w + 1, 0], <double>energy[w] + <double>energy[w + 1],
            <const float*>&hop_rotation[0], &thresholds.limits,
        )
        if labels[w] < 0:
            continue
        found += 1
        if waiting < 0:
            waiting = w
            continue
        ivrsim_dft_terms_pair(&samples[waiting * m], &samples[w * m], 2 * m, &hann_basis[0, 0], <float*>&hann[waiting, 0], <float*>&hann[w, 0])
        waiting = -1
    if waiting >= 0:
        _dft_terms(&samples[waiting * m], 2 * m, hann_basis, &hann[waiting, 0])
    return found


cdef inline double _magnitude(const float complex[:, ::1] spectra, Py_ssize_t block, long tone) noexcept nogil:
    """|DFT| of a half-block at one tone; zero outside the history (before it, or not yet arrived)."""
    if block < 0 or block >= spectra.shape[0]:
        return 0.0
    return sqrt(_abs2(<double complex>spectra[block, tone]))


cdef inline double _fill(const float complex[:, ::1] spectra, Py_ssize_t block, long row, long col, double ref_row, double ref_col) noexcept nogil:
    """Share of a half-block a tone fills: its magnitude over the run's reference, averaged over both tones."""
    cdef double share = 0.5 * (_magnitude(spectra, block, row) / ref_row + _magnitude(spectra, block, col) / ref_col)
    return min(max(share, 0.0), 1.0)


cdef class RunTable:
    """Stage 4's output and the decision's working lists, one entry per run, kept from one decision to the
    next and grown with the history: a streamed decision would otherwise allocate (and view) a dozen
    small arrays, which cost more than the decision's own loops."""

    cdef long[::1] firsts, lasts, labels, segment_of_run, open_first, order, segment_starts
    cdef double[::1] starts, ends, open_end
    cdef Py_ssize_t capacity

    def __init__(self):
        self.capacity = 0
        self.reserve(64)

    cdef void reserve(self, Py_ssize_t runs):
        """Room for ``runs`` runs (the contents are not kept). What a long held key grew is given back once the
        history is short again."""
        if runs > self.capacity:
            self.capacity = max(runs, 2 * self.capacity)
        elif self.capacity > 256 and 4 * runs < self.capacity:
            self.capacity = max(2 * runs, 64)
        else:
            return
        self.firsts = np.empty(self.capacity, dtype=np.int64)
        self.lasts = np.empty(self.capacity, dtype=np.int64)
        self.labels = np.empty(self.capacity, dtype=np.int64)
        self.segment_of_run = np.empty(self.capacity, dtype=np.int64)
        self.open_first = np.empty(self.capacity, dtype=np.int64)
        self.order = np.empty(self.capacity, dtype=np.int64)
        self.segment_starts = np.empty(self.capacity, dtype=np.int64)
        self.starts = np.empty(self.capacity, dtype=np.float64)
        self.ends = np.empty(self.capacity, dtype=np.float64)
        self.open_end = np.empty(self.capacity, dtype=np.float64)


cdef Py_ssize_t runs_and_segments(const signed char[::1] labels, const float complex[:, ::1] half_spectra, double bridge, RunTable table):
    """Stage 4: runs of windows with the same digit, where each tone starts and ends, and the segments.

    For a run of windows ``a .. b``, half-blocks ``a+1 .. b`` are filled by the tone, and its edges lie
    in the two half-blocks on either side. A tone filling a fraction p of a half-block gives p times the
    full DFT magnitude, so each edge half-block counts with its share of the mean magnitude of the filled
    ones. (Over 51 samples the other group's tone leaks about 15 % into each bin, beating from block to
    block; the mean, unlike the peak, does not bias the shares, and the beat leaves about 1 ms of error
    per edge.) The tone starts that many half-blocks before half-block ``a+1`` and ends that many after
    the end of half-block ``b``: the 23 ms / 40 ms duration rule and the 10 ms / 40 ms gap rule are
    decided on these measured times, not on block counts. A run joins the latest segment of its digit
    that ended at most ``bridge`` half-blocks before it started; runs in between (glitches inside the
    gap) are dropped.

    Args:
        labels: (windows,) int8 window labels, -1 where no digit.
        half_spectra: (windows + 1 or more, 8) complex64 Goertzel terms of the half-blocks.
        bridge: the longest gap bridged, in half-blocks.

    Returns how many runs ``table`` now holds: each run's first and last window (``firsts``, ``lasts``),
    its label, its start and end in half-blocks, and its segment (``segment_of_run``: 0, 1, ... in order;
    -1 if dropped).
    """
    cdef Py_ssize_t windows = labels.shape[0]
    table.reserve(windows)
    cdef long[::1] firsts = table.firsts
    cdef long[::1] lasts = table.lasts
    cdef long[::1] run_labels = table.labels
    cdef double[::1] starts = table.starts
    cdef double[::1] ends = table.ends
    cdef long[::1] segment_of_run = table.segment_of_run
    # Open segments (the chain a new run may join), as the index of their first run and their end.
    cdef long[::1] open_first = table.open_first
    cdef double[::1] open_end = table.open_end
    cdef Py_ssize_t w, r, b, i, j, runs = 0, open_count = 0
    cdef long label, row, col, previous, segments = 0
    cdef double ref_row, ref_col, sum_row, sum_col
    cdef bint joined
    with nogil:
        w = 0
        while w < windows:
            if labels[w] < 0:
                w += 1
                continue
            label = labels[w]
            firsts[runs] = w
            while w + 1 < windows and labels[w + 1] == label:
                w += 1
            lasts[runs] = w
            run_labels[runs] = label
            runs += 1
            w += 1
        for r in range(runs):
            row = run_labels[r] // 4
            col = 4 + run_labels[r] % 4
            # Reference magnitude: the mean over the half-blocks the tone fills (first + 1 .. last), or for a
            # one-window run the larger of its two half-blocks.
            if lasts[r] > firsts[r]:
                sum_row = 0.0
                sum_col = 0.0
                for b in range(firsts[r] + 1, lasts[r] + 1):
                    sum_row += _magnitude(half_spectra, b, row)
                    sum_col += _magnitude(half_spectra, b, col)
                ref_row = sum_row / (lasts[r] - firsts[r])
                ref_col = sum_col / (lasts[r] - firsts[r])
            else:
                ref_row = max(_magnitude(half_spectra, firsts[r] + 1, row), _magnitude(half_spectra, firsts[r] + 2, row))
                ref_col = max(_magnitude(half_spectra, firsts[r] + 1, col), _magnitude(half_spectra, firsts[r] + 2, col))
            if ref_row <= 0.0:
                ref_row = INFINITY
            if ref_col <= 0.0:
                ref_col = INFINITY
            starts[r] = firsts[r] + 1 - (
                _fill(half_spectra, firsts[r] - 1, row, col, ref_row, ref_col) + _fill(half_spectra, firsts[r], row, col, ref_row, ref_col)
            )
            ends[r] = lasts[r] + 1 + (
                _fill(half_spectra, lasts[r] + 1, row, col, ref_row, ref_col) + _fill(half_spectra, lasts[r] + 2, row, col, ref_row, ref_col)
            )
        # Bridging: a run joins the latest open segment of its digit that ended at most ``bridge`` before it
        # started; the segments after that one (glitches inside the gap) are dropped.
        for r in range(runs):
            joined = False
            i = open_count - 1
            while i >= 0:
                if starts[r] - open_end[i] > bridge:
                    break
                if run_labels[open_first[i]] == run_labels[r]:
                    segment_of_run[r] = segment_of_run[open_first[i]]
                    open_end[i] = ends[r]
                    for j in range(i + 1, open_count):
                        _drop_segment(segment_of_run, r, segment_of_run[open_first[j]])
                    open_count = i + 1
                    joined = True
                    break
                i -= 1
            if not joined:
                segment_of_run[r] = segments
                segments += 1
                open_first[open_count] = r
                open_end[open_count] = ends[r]
                open_count += 1
        # Number the segments left 0, 1, ... in order (a kept segment's runs are consecutive among the kept).
        segments = 0
        previous = -1
        for r in range(runs):
            if segment_of_run[r] < 0:
                continue
            if segment_of_run[r] != previous:
                previous = segment_of_run[r]
                segments += 1
            segment_of_run[r] = segments - 1
    return runs


cdef inline void _drop_segment(long[::1] segment_of_run, Py_ssize_t before, long segment) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(before):
        if segment_of_run[r] == segment:
            segment_of_run[r] = -1


cdef inline double _band_power(const double[:, ::1] prefix, Py_ssize_t row, double bin_hz, double low_hz, double high_hz, Py_ssize_t* bins_out) noexcept nogil:
    """Power of one spectrum in [low_hz, high_hz], the bins whose centres lie inside, from its prefix sums
    (``prefix[row, i]``: the power of bins 0 .. i - 1): ``ivrsim_band_power``, which the comb uses too."""
    cdef Py_ssize_t bins
    cdef double power = ivrsim_band_power(&prefix[row, 0], prefix.shape[1] - 1, low_hz / bin_hz, high_hz / bin_hz, &bins)
    if bins_out != NULL:
        bins_out[0] = bins
    return power


cdef inline double _peak_hz(const float[:, ::1] power, Py_ssize_t row, double bin_hz, double center_hz, double half_width_hz) noexcept nogil:
    """Frequency of the strongest bin within ``half_width_hz`` of ``center_hz`` (the first such bin if none)."""
    cdef Py_ssize_t bins = power.shape[1], first, i, best
    cdef double best_value = -1.0
    first = <Py_ssize_t>max(ceil((center_hz - half_width_hz) / bin_hz), 0.0)
    best = min(first, bins - 1)
    i = first
    while i < bins and i * bin_hz <= center_hz + half_width_hz:
        if fabs(i * bin_hz - center_hz) <= half_width_hz and power[row, i] > best_value:
            best_value = power[row, i]
            best = i
        i += 1
    return best * bin_hz


cdef inline void _power_row(const float complex[:, ::1] spectra, Py_ssize_t row, float[:, ::1] power, double[:, ::1] prefix) noexcept nogil:
    """Row ``row`` of ``spectra`` as a power spectrum and its prefix sums, into row 0 of ``power`` and
    ``prefix``: made right before it is read, while it is in the cache."""
    ivrsim_power_prefix(<const float*>&spectra[row, 0], spectra.shape[1], &power[0, 0], &prefix[0, 0])


cdef inline Py_ssize_t _stretch_length(const long[:, ::1] spans, Py_ssize_t i, Py_ssize_t samples) noexcept nogil:
    """Samples of span i (first, last) inside ``samples`` samples; at least 2 (a resolution for an empty one)."""
    return max(min(spans[i, 1], samples) - max(spans[i, 0], 0), 2)


cdef double _block_powers(const float[::1] flat, Py_ssize_t first, Py_ssize_t count, Py_ssize_t block, double[::1] power):
    """The power of ``count`` blocks of ``block`` samples from ``flat[first]`` into ``power`` (as float32 sums);
    returns their median."""
    cdef Py_ssize_t b
    sorted_array = np.empty(count)
    cdef double[::1] ordered = sorted_array
    for b in range(count):
        power[b] = <float>ivrsim_energy(&flat[first + b * block], block)
        ordered[b] = power[b]
    qsort(&ordered[0], count, sizeof(double), _compare_doubles)
    return ordered[count // 2] if count % 2 else 0.5 * (ordered[count // 2 - 1] + ordered[count // 2])


cdef int _compare_doubles(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0], y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef class HannWindow:
    """A Hann window's samples (``_hann_window``), held typed: reading them costs no buffer check."""

    cdef const float[::1] values

    def __cinit__(self, const float[::1] values):
        self.values = values


cdef Py_ssize_t _slot_offset(type owner, str name) except -1:
    """Where the slot ``name`` of ``owner`` (a class with ``__slots__``) lies in its instances, in bytes."""
    descriptor = owner.__dict__.get(name)
    if type(descriptor) is not MemberDescriptorType or descriptor.__objclass__ is not owner:
        raise TypeError(f"{owner.__name__}.{name} must be a slot of {owner.__name__} (a dataclass with slots=True)")
    return (<PyMemberDescrObject*>descriptor).d_member.offset


cdef inline void _set_slot(PyObject* o, Py_ssize_t offset, object value) noexcept:
    """Store ``value`` in an empty slot (a fresh instance's, still NULL) at ``offset``; the slot owns it."""
    Py_INCREF(value)
    (<PyObject**>(<char*>o + offset))[0] = <PyObject*>value


cdef class SegmentJudge:
    """Stages 5 and 6 for segments (runs of windows of one digit): a digit, or not, with its frequencies
    and levels: the tone meter (``_measure``), the checks on frequency, coherence, drift, level spread,
    twist and harmonic ratio, the hold (``_holds``), and purity with the harmonic comb (``purity``),
    with the second looks (``_longest_unbroken``, the call-progress notch in ``decide``). The module
    docstring of ``dtmf_receiver`` tells the stages; ``DtmfThresholds`` tells each limit. ``rfft``
    (scipy's) is called once per FFT size for the purity spectra.

    Args:
        rate_hz, half_block_samples: the receiver's rate and half-block length.
        hop_rotation: per DTMF frequency, the phase a steady tone at it turns between windows one
            half-block apart (complex64, 8).
        response, response_first_hz, response_step_hz: the Hann window's gain at offsets from a tone's
            frequency, tabulated from ``response_first_hz`` every ``response_step_hz``.
        gain: the window's sum (a tone of amplitude A at its frequency gives |X| = A * gain / 2).
        limits: a ``DtmfThresholds``.
        settings: the receiver's constants by name, in samples, half-blocks or windows at its rate (see
            ``DtmfReceiver._judge_settings``), with ``notch``: an object with ``sections`` (second-order
            sections) and ``apply(samples)``, the call-progress notch; ``digit_type`` (a dataclass with
            slots), its ``digit_fields`` (key, start and end in seconds, frequencies, levels) and the
            ``keys`` by label.
        rfft: the real FFT of each row of a float32 array, complex64 out (``dtmf_receiver.rfft_rows``).
    """

    cdef double rate_hz, to_hz, gain, response_first_hz, response_step_hz, zero_dbm0_power
    cdef Py_ssize_t m
    cdef double[::1] response
    cdef float complex[::1] hop_rotation
    cdef double[::1] nominal_hz
    cdef double[:, ::1] harmonic_ratios
    cdef double[::1] call_progress_tones_hz
    cdef double call_progress_top_hz
    cdef double max_deviation_pct, min_coherence, max_drift_hz, max_level_spread, max_normal_twist_db, max_reverse_twist_db
    cdef double max_inband_residual, max_upper_band_ratio, max_harmonic_comb, max_standing_comb, min_comb_contrast, max_peak_miss
    cdef double min_wide_comb_contrast, min_comb_share, comb_tone_slack
    cdef double max_turn_deviation_rad, turn_inside, turn_outside, dropout_magnitude, dropout_power, beating_gap_power
    cdef Py_ssize_t min_hold_windows, min_dropout_samples, purity_edge, purity_longest, purity_shortest, comb_min_samples
    cdef Py_ssize_t break_block, min_break_blocks, max_break_samples
    cdef double break_power
    cdef double band_lo, band_hi, upper_lo, upper_hi, comb_lo, comb_hi, comb_min_f0_hz, comb_match_pct, comb_wide_match_pct
    cdef long comb_max_row_harmonic
    cdef ivrsim_comb_limits comb_limits
    cdef object rfft, notch, hann_basis
    cdef dict scratch
    cdef double bridge, min_tone_half_blocks
    cdef Py_ssize_t settle_windows, lead_half_blocks, call_progress_lead_samples
    cdef tuple call_progress_pairs_hz
    cdef object digit_type
    cdef dict windows
    cdef RunTable runs
    cdef tuple keys
    cdef Py_ssize_t digit_slots[7]
    cdef double seconds_per_half_block

    def __init__(self, double rate_hz, Py_ssize_t half_block_samples, hop_rotation, response, double response_first_hz,
                 double response_step_hz, double gain, limits, dict settings, rfft):
        self.rate_hz = rate_hz
        self.m = half_block_samples
        self.to_hz = rate_hz / (2.0 * M_PI * half_block_samples)
        self.hop_rotation = np.ascontiguousarray(hop_rotation, dtype=np.complex64)
        self.response = np.ascontiguousarray(response, dtype=np.float64)
        self.response_first_hz = response_first_hz
        self.response_step_hz = response_step_hz
        self.gain = gain
        self.nominal_hz = np.ascontiguousarray(settings["frequencies_hz"], dtype=np.float64)
        self.harmonic_ratios = np.ascontiguousarray(settings["harmonic_ratios"], dtype=np.float64).reshape(-1, 2)
        self.call_progress_tones_hz = np.ascontiguousarray(settings["call_progress_tones_hz"], dtype=np.float64)
        self.call_progress_top_hz = max(settings["call_progress_tones_hz"])
        self.zero_dbm0_power = settings["zero_dbm0_power"]
        self.max_deviation_pct = limits.max_frequency_deviation_pct
        self.min_coherence = limits.min_phase_coherence
        self.max_drift_hz = limits.max_drift_hz
        self.max_level_spread = limits.max_level_spread
        self.max_normal_twist_db = limits.max_normal_twist_db + limits.twist_margin_db
        self.max_reverse_twist_db = limits.max_reverse_twist_db + limits.twist_margin_db
        self.max_inband_residual = limits.max_inband_residual
        self.max_upper_band_ratio = limits.max_upper_band_ratio
        self.max_harmonic_comb = limits.max_harmonic_comb
        self.max_standing_comb = limits.max_standing_comb
        self.min_comb_share = min(self.max_harmonic_comb, self.max_standing_comb)  # the least a voice's comb holds
        self.min_comb_contrast = limits.min_comb_contrast
        self.max_peak_miss = limits.max_peak_miss
        self.max_turn_deviation_rad = settings["max_turn_deviation_rad"]
        if not 0.0 < self.max_turn_deviation_rad < 0.99 * M_PI / 2.0:
            raise ValueError("max_turn_deviation_rad must lie between 0 and pi / 2")
        self.turn_inside = tan(0.99 * self.max_turn_deviation_rad)
        self.turn_outside = tan(1.01 * self.max_turn_deviation_rad)
        self.dropout_magnitude = settings["dropout_magnitude"]
        self.dropout_power = settings["dropout_power"]
        self.beating_gap_power = settings["beating_gap_power"]
        self.min_hold_windows = settings["min_hold_windows"]
        self.min_dropout_samples = settings["min_dropout_samples"]
        self.break_block = max(settings["break_block_samples"], 1)
        self.min_break_blocks = max((self.min_dropout_samples + self.break_block - 1) // self.break_block, 1)
        self.break_power = settings["break_power"]
        self.max_break_samples = settings["max_break_samples"]
        self.purity_edge = settings["purity_edge_samples"]
        self.purity_longest = settings["purity_longest_samples"]
        self.purity_shortest = settings["purity_shortest_samples"]
        self.comb_min_samples = settings["comb_min_samples"]
        self.band_lo, self.band_hi = settings["dtmf_band_hz"]
        self.upper_lo, self.upper_hi = settings["upper_band_hz"]
        self.comb_lo, self.comb_hi = settings["comb_band_hz"]
        self.comb_min_f0_hz = settings["comb_min_f0_hz"]
        self.comb_match_pct = settings["comb_match_pct"]
        self.comb_wide_match_pct = settings["comb_wide_match_pct"]
        # m / (1 - m): how far, over its frequency, a tone may lie from the harmonic of a fundamental it fits.
        self.comb_tone_slack = self.comb_wide_match_pct / (100.0 - self.comb_wide_match_pct)
        self.min_wide_comb_contrast = settings["min_wide_comb_contrast"]
        self.comb_max_row_harmonic = settings["comb_max_row_harmonic"]
        self.comb_limits.comb_lo_hz = self.comb_lo
        self.comb_limits.comb_hi_hz = self.comb_hi
        self.comb_limits.min_f0_hz = self.comb_min_f0_hz
        self.comb_limits.match_pct = self.comb_match_pct
        self.comb_limits.wide_match_pct = self.comb_wide_match_pct
        self.comb_limits.call_progress_top_hz = self.call_progress_top_hz
        self.comb_limits.call_progress_hz = &self.call_progress_tones_hz[0]
        self.comb_limits.call_progress_count = self.call_progress_tones_hz.shape[0]
        self.comb_limits.max_row_harmonic = self.comb_max_row_harmonic
        self.bridge = settings["bridge_half_blocks"]
        self.min_tone_half_blocks = settings["min_tone_half_blocks"]
        self.settle_windows = settings["settle_windows"]
        self.lead_half_blocks = settings["lead_half_blocks"]
        self.call_progress_lead_samples = settings["call_progress_lead_samples"]
        self.call_progress_pairs_hz = tuple(settings["call_progress_pairs_hz"])
        self.hann_basis = np.ascontiguousarray(settings["hann_basis"], dtype=np.float32)
        self.notch = settings["notch"]
        self.digit_type = settings["digit_type"]
        if self.digit_type.__new__ is not object.__new__:
            raise TypeError("digit_type must be made by object.__new__ (a dataclass with slots)")
        digit_fields = tuple(settings["digit_fields"])
        if len(digit_fields) != 7:
            raise TypeError("digit_type must have the seven fields of DtmfDigit")
        for i, name in enumerate(digit_fields):
            self.digit_slots[i] = _slot_offset(self.digit_type, name)
        self.keys = tuple(settings["keys"])
        self.seconds_per_half_block = half_block_samples / rate_hz
        self.runs = RunTable()
        self.rfft = rfft
        self.scratch = {}
        self.windows = {}

    # -- stage 5: the tone meter ----------------------------------------------------------------------

    cdef void _measure(
        self, const float complex[:, ::1] hann, const long[::1] firsts, const long[::1] lasts, const long[::1] order,
        Py_ssize_t r0, Py_ssize_t r1, long tone, double* out, Py_ssize_t break_start=0, Py_ssize_t break_end=0
    ) noexcept nogil:
        """Stage 5, the tone meter: one tone of one segment (runs ``order[r0:r1]``) from its Hann-windowed
        DFTs. out = offset_hz, coherence, power, drift_hz, level_spread, magnitude_total.

        The frequency comes from the phase turn between windows a half-block (hop) apart (a pulse-pair
        estimate): ``offset_hz = angle(sum Y[w+1] * conj(Y[w])) * rate / (2 pi hop)``, unambiguous within
        +-rate / (2 hop) = +-78 Hz. Only pairs of consecutive windows of one run count. The Hann window
        keeps the other group's tone 40 dB down, so that 8 dB of twist does not bend the phase. The
        coherence is the turns' sum over the sum of their magnitudes (1.0 for a steady sine). The level is
        the mean over windows inside the tone (both neighbours in the run), corrected for the window's
        response at the measured offset.

        The drift compares the first half of a segment's turns with the second, split by count (a dropout
        near one end leaves both halves some), leaving out turns more than ``max_turn_deviation_rad`` from
        the segment's mean: a block the sound card dropped would pull its half by hertz, while a voice's
        glide bends each turn a little; infinite where a half has none (the pair a voice mimics comes and
        goes with its pitch pulses, a window at a time). The level spread (standard deviation over mean)
        is over the inside windows but those a dropout dims (under ``dropout_magnitude`` of the mean) and
        those that overlap samples ``break_start:break_end`` (``_lone_break``): a break is bridged, not a
        swell; a voice's partials swell and fade with its formants.
        """
        cdef double complex turn, total = 0.0, rotation = self.hop_rotation[tone], reference, early = 0.0, late = 0.0
        cdef double magnitude_total = 0.0, inner_power = 0.0, every_power = 0.0, mean = 0.0, mean_sq, mag
        cdef double lit_sum = 0.0, lit_square = 0.0, lit_mean, position, fraction, response_at, amplitude, offset
        cdef Py_ssize_t i, r, w, turn_count = 0, rank = 0, early_count = 0, late_count = 0
        cdef Py_ssize_t inner_count = 0, every_count = 0, lit_count = 0, cell, last_cell = self.response.shape[0] - 1
        # Two passes over the windows (each sum taken in window order): the turns and the magnitudes, then what
        # is judged against their means.
        for i in range(r0, r1):
            r = order[i]
            for w in range(firsts[r], lasts[r] + 1):
                if w < lasts[r]:
                    turn = <double complex>(hann[w + 1, tone] * hann[w, tone].conjugate())
                    total = total + turn
                    magnitude_total += sqrt(_abs2(turn))
                    turn_count += 1
                mag = sqrt(_abs2(<double complex>hann[w, tone]))
                every_power += mag * mag
                every_count += 1
                if firsts[r] < w < lasts[r]:
                    inner_power += mag * mag
                    mean += mag
                    inner_count += 1
        total = total * rotation
        reference = total.conjugate() * rotation
        if inner_count > 0:
            mean_sq = inner_power / inner_count
            mean = mean / inner_count
        else:
            mean_sq = every_power / every_count if every_count > 0 else 0.0
        for i in range(r0, r1):
            r = order[i]
            for w in range(firsts[r], lasts[r]):
                turn = <double complex>(hann[w + 1, tone] * hann[w, tone].conjugate())
                if _within_angle(turn * reference, self.max_turn_deviation_rad, self.turn_inside, self.turn_outside):
                    if 2 * rank < turn_count:
                        early = early + turn
                        early_count += 1
                    else:
                        late = late + turn
                        late_count += 1
                rank += 1
                if w == firsts[r]:
                    continue
                mag = sqrt(_abs2(<double complex>hann[w, tone]))
                if mag >= self.dropout_magnitude * mean and not (w * self.m < break_end and (w + 2) * self.m > break_start):
                    lit_sum += mag
                    lit_square += mag * mag
                    lit_count += 1
        if early_count > 0 and late_count > 0:
            out[3] = _angle(late * early.conjugate()) * self.to_hz
        else:
            out[3] = INFINITY
        if lit_count > 1:
            lit_mean = lit_sum / lit_count
            out[4] = sqrt(max(lit_square / lit_count - lit_mean * lit_mean, 0.0)) / max(lit_mean, 1e-30)
        else:
            out[4] = 0.0
        offset = _angle(total) * self.to_hz
        out[0] = offset
        out[1] = sqrt(_abs2(total)) / max(magnitude_total, 1e-30)
        position = (offset - self.response_first_hz) / self.response_step_hz
        if position <= 0.0:
            response_at = self.response[0]
        elif position >= last_cell:
            response_at = self.response[last_cell]
        else:
            cell = <Py_ssize_t>floor(position)
            fraction = position - cell
            response_at = self.response[cell] + fraction * (self.response[cell + 1] - self.response[cell])
        amplitude = 2.0 * sqrt(mean_sq) / (self.gain * max(response_at, 1e-6))
        out[2] = amplitude * amplitude / 2.0
        out[5] = magnitude_total

    # -- stage 6: the pair holds the signal -----------------------------------------------------------

    cdef inline Py_ssize_t _sample(self, double half_blocks) noexcept nogil:
        return <Py_ssize_t>rint(half_blocks * self.m)

    cdef bint _gaps_quiet(self, const float[::1] flat, const double[::1] starts, const double[::1] ends,
                          const long[::1] order, Py_ssize_t r0, Py_ssize_t r1, bint strict) noexcept nogil:
        """Whether the breaks between a segment's runs are dropouts (their mean power at most
        ``beating_gap_power`` of the runs'), not beating partials. ``strict``: every break must also last
        ``min_dropout_samples`` (``_holds``); otherwise breaks where runs meet are left out."""
        cdef Py_ssize_t i, a, b, gap_a
        cdef double run_power = 0.0, gap_power = 0.0, run_samples = 0.0, gap_samples = 0.0
        for i in range(r0, r1):
            a = self._sample(starts[order[i]])
            b = self._sample(ends[order[i]])
            if i > r0:
                gap_a = self._sample(ends[order[i - 1]])
                if strict and a - gap_a < self.min_dropout_samples:
                    return False
                if a > gap_a:
                    gap_power += self._span_energy(flat, gap_a, a)
                    gap_samples += self._span_count(flat, gap_a, a)
            run_power += self._span_energy(flat, a, b)
            run_samples += self._span_count(flat, a, b)
        return (gap_power / gap_samples if gap_samples > 0 else 0.0) <= self.beating_gap_power * (
            run_power / run_samples if run_samples > 0 else 0.0
        )

    cdef inline double _span_energy(self, const float[::1] flat, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
        a = max(a, 0)
        b = min(b, flat.shape[0])
        return ivrsim_energy(&flat[a], b - a) if b > a else 0.0

    cdef inline double _span_count(self, const float[::1] flat, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
        return <double>max(min(b, flat.shape[0]) - max(a, 0), 0)

    cdef bint _holds(self, const float[::1] flat, const long[::1] firsts, const long[::1] lasts, const double[::1] starts,
                     const double[::1] ends, const long[::1] order, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
        """Whether a segment's pair holds the signal: one of its runs lasts ``min_hold_windows`` windows, or
        the breaks between its runs are real dropouts (quiet, at least ``min_dropout_samples``). A key holds
        its pair window after window but for a dropout; the pair a voice's partials or a chord's notes
        mimic comes and goes a window or two at a time while the sound goes on."""
        cdef Py_ssize_t i
        for i in range(r0, r1):
            if lasts[order[i]] - firsts[order[i]] + 1 >= self.min_hold_windows:
                return True
        if r1 - r0 == 1:
            return False
        return self._gaps_quiet(flat, starts, ends, order, r0, r1, True)

    cdef bint _lone_break(self, const float[::1] flat, Py_ssize_t a, Py_ssize_t b, Py_ssize_t* out):
        """Whether the tone in ``flat[a:b]`` has one break, and no other, of ``max_break_samples`` or less;
        if so, its samples (start, end) into out.

        A break of a few milliseconds dims the windows and half-blocks it touches too little to be told
        from the tone's own beating (``dropout_magnitude``, ``dropout_power``), yet it splatters the
        spectrum and moves the level. Seen in blocks of about a millisecond (``break_block``) it is plain:
        ``min_break_blocks`` blocks in a row (``min_dropout_samples``) under ``break_power`` of the median
        block's power, with tone on both sides. Two tones beating dim one such block at most to 11 % of
        their mean (268 Hz apart, the closest pair), never two in a row. A key's tone breaks once, if at
        all; a low voice falls quiet between its pitch pulses, again and again. The break is widened by a
        block on either side, for the blocks it covers in part."""
        cdef Py_ssize_t q = self.break_block, count, j, low_from = -1, found = 0
        a = max(a, 0)
        b = min(b, flat.shape[0])
        count = (b - a) // q
        if count < self.min_break_blocks + 2:
            return False
        cdef double[::1] power = np.empty(count)
        cdef double floor_power = self.break_power * _block_powers(flat, a, count, q, power)
        for j in range(count):
            if power[j] < floor_power:
                if low_from < 0:
                    low_from = j
                continue
            if low_from > 0 and j - low_from >= self.min_break_blocks:
                found += 1
                out[0] = a + (low_from - 1) * q
                out[1] = a + (j + 1) * q
            low_from = -1
        return found == 1 and out[1] - out[0] <= self.max_break_samples + 2 * q

    # -- purity ---------------------------------------------------------------------------------------

    cdef object _spectra(self, const float[::1] flat, const long[:, ::1] spans, list rows, Py_ssize_t size):
        """Hann-windowed spectra (complex64, a row each) of ``flat[first:last]`` for ``spans[rows]``, zero-padded
        to ``size`` (``_by_size``), in the judge's scratch (``_scratch``) with one row for a power spectrum and
        its prefix sums (``_power_row``): ``(spectra, power, prefix, bin_hz)``, valid until the next call."""
        cdef Py_ssize_t row, i, a, b, n = flat.shape[0], count = len(rows)
        cdef const float[::1] window
        frames_array, spectrum_array, power_array, prefix_array = self._scratch(count, size)
        cdef float[:, ::1] frame = frames_array
        for row, i in enumerate(rows):
            a = max(spans[i, 0], 0)
            b = max(min(spans[i, 1], n), a)
            if b > a:
                window = self._window(b - a).values
                ivrsim_windowed(&flat[a], &window[0], b - a, &frame[row, 0])
            memset(&frame[row, b - a], 0, (size - (b - a)) * sizeof(float))
        return self.rfft(frames_array, spectrum_array), power_array, prefix_array, self.rate_hz / size

    cdef HannWindow _window(self, Py_ssize_t length):
        """The Hann window of ``length`` samples (``_hann_window``), kept by the judge, typed: the shared cache
        behind a Python call, and a buffer check on each use, cost more than windowing the samples."""
        window = self.windows.get(length)
        if window is None:
            if len(self.windows) >= WINDOWS_KEPT:
                self.windows.clear()
            window = HannWindow(_hann_window(length))
            self.windows[length] = window
        return <HannWindow>window

    cdef tuple _scratch(self, Py_ssize_t rows, Py_ssize_t size):
        """Arrays for ``rows`` spectra of ``size`` points (frames, complex spectra) and one row of power and
        prefix sums, kept per size from one decision to the next (a batch decision judges dozens of digits,
        a streamed one a few: new arrays each time cost more than the work in them). Grown by doubling; a
        call that asks more than ``SCRATCH_MAX_POINTS`` points gets arrays of its own, so that a long
        recording fed at once leaves nothing large behind."""
        held = self.scratch.get(size)
        cdef Py_ssize_t capacity = 0 if held is None else (<tuple>held)[0].shape[0]
        if capacity < rows:
            capacity = max(rows, 2 * capacity)
            held = (
                np.empty((capacity, size), dtype=np.float32),
                np.empty((capacity, size // 2 + 1), dtype=np.complex64),
                np.empty((1, size // 2 + 1), dtype=np.float32),
                np.empty((1, size // 2 + 2)),
            )
            if capacity * size <= SCRATCH_MAX_POINTS:
                self.scratch[size] = held
        return held[0][:rows], held[1][:rows], held[2], held[3]

    cdef dict _by_size(self, const float[::1] flat, const long[:, ::1] spans):
        """Rows of ``spans`` by FFT size (``_fft_size``; a held key's 250 ms stretch does not make every 40 ms
        one pay for 4,096 points)."""
        cdef dict groups = {}
        cdef Py_ssize_t i, n = flat.shape[0], count = spans.shape[0], size
        if count == 0:
            return groups
        size = _fft_size(2 * _stretch_length(spans, 0, n) - 1)
        for i in range(1, count):
            if _fft_size(2 * _stretch_length(spans, i, n) - 1) != size:
                break
        else:
            return {size: list(range(count))}  # (one size, as on a line of short keys: no per-row dict work)
        for i in range(count):
            groups.setdefault(_fft_size(2 * _stretch_length(spans, i, n) - 1), []).append(i)
        return groups

    cdef object purity(self, const float[::1] flat, const long[:, ::1] spans, const double[:, ::1] hz, const long[::1] segment_of,
                       bint comb_only=False):
        """Which spans of ``flat`` (first, last) hold their tones alone: span i's measured tones are row
        ``segment_of[i]`` of ``hz`` (segments, 2). Returns bool (spans,).

        A Hann-windowed spectrum of the whole stretch, zero-padded to twice its length or more (25 Hz
        resolution for 40 ms), resolves the harmonics of a voice or an instrument that a 12.75 ms block
        cannot; what lies within the main lobe of either tone (2.2 resolutions) counts as tone. A DTMF pair
        stands alone in ``dtmf_band_hz`` with little above it (``upper_band_hz``): the power left in the
        band and the power above it, each over the tones', must stay under ``max_inband_residual`` and
        ``max_upper_band_ratio``. Two notes close together can pull the phase-based frequency between
        them, where neither has its peak: each tone's spectral peak must lie within ``max_peak_miss``
        resolutions of it.

        The harmonic comb: the partials of one voice or note are multiples of its fundamental f0. Where
        both tones lie within ``comb_match_pct`` of multiples p and q of one f0 (halfway between row / p and
        col / q; p up to ``comb_max_row_harmonic``, f0 at least ``comb_min_f0_hz``), the pair may be two
        harmonics that formants lift (espeak-ng's raised voices put the 3rd and 7th of 233 Hz on key A, the
        4th and 7th of 176 Hz on key 1). A voice then also has energy at f0's other multiples, standing out
        from the spectrum halfway between them; a key has nothing there but noise (its tones are unrelated,
        and seldom fit that close). For the fitting f0 whose other harmonics stand out most, their power
        (within half a resolution of each, in ``comb_band_hz``) over the tones' and its contrast (mean power
        per bin on them over halfway between) decide: a voice when the power reaches ``max_harmonic_comb``,
        or ``max_standing_comb`` with a contrast of ``min_comb_contrast``. A voice whose pitch glides fits
        looser (a robot voice puts its 3rd and 5th harmonics on key 1, 1.6 % from 3:5 as measured): the f0s
        both tones fit within ``comb_wide_match_pct`` are judged the same way but for a contrast of
        ``min_wide_comb_contrast``, which speech under a key does not reach. All of it on a stretch of
        ``comb_min_samples`` or more (shorter ones are too coarse: the tones' own lobes cover
        the harmonics; ``_judge`` then judges the comb alone over the whole segment). Harmonics within the
        main lobe of a call-progress tone are left out (dial tone on the line). ``comb_only``: whether each
        span holds no such comb, the rest unjudged.
        """
        pure_array = np.zeros(spans.shape[0], dtype=bool)
        cdef unsigned char[::1] pure = pure_array.view(np.uint8)
        cdef const float complex[:, ::1] spectra
        cdef float[:, ::1] power
        cdef double[:, ::1] prefix
        cdef double bin_hz
        cdef double sums[9]
        cdef Py_ssize_t row, i, length, n = flat.shape[0]
        cdef bint voice
        for size, rows in self._by_size(flat, spans).items():
            spectra_array, power_array, prefix_array, bin_hz = self._spectra(flat, spans, rows, size)
            spectra = spectra_array
            power = power_array
            prefix = prefix_array
            for row, i in enumerate(rows):
                length = _stretch_length(spans, i, n)
                _power_row(spectra, row, power, prefix)
                self._purity_sums(
                    power, prefix, 0, bin_hz, self.rate_hz / length, hz[segment_of[i], 0], hz[segment_of[i], 1], sums
                )
                # sums: tones, residual, upper, peak miss (row, col), comb and contrast, wide comb and contrast
                if not sums[0] > 0.0:
                    continue
                voice = self._comb_voice(sums[5] / sums[0], sums[6], self.min_comb_contrast) or self._comb_voice(
                    sums[7] / sums[0], sums[8], self.min_wide_comb_contrast
                )
                if comb_only:
                    pure[i] = not (voice and spans[i, 1] - spans[i, 0] >= self.comb_min_samples)
                    continue
                pure[i] = (
                    sums[1] / sums[0] <= self.max_inband_residual
                    and sums[2] / sums[0] <= self.max_upper_band_ratio
                    and not (voice and spans[i, 1] - spans[i, 0] >= self.comb_min_samples)
                    and sums[3] <= self.max_peak_miss
                    and sums[4] <= self.max_peak_miss
                )
        return pure_array

    cdef inline bint _comb_voice(self, double comb, double contrast, double min_contrast) noexcept nogil:
        """A comb of ``comb`` (its power over the tones') and ``contrast`` is a voice's (see ``purity``)."""
        return comb >= self.max_harmonic_comb or (comb >= self.max_standing_comb and contrast >= min_contrast)

    cdef void _purity_sums(self, const float[:, ::1] power, const double[:, ::1] prefix, Py_ssize_t row, double bin_hz, double res, double row_hz,
                           double col_hz, double* sums) noexcept nogil:
        """sums = power in the tones' lobes, what is left in the DTMF band, the power above it, each peak's
        distance from its tone in resolutions, the comb's power and contrast over the close fits, and over the
        wide ones (see ``purity``)."""
        cdef double lobe = 2.2 * res, edge = 1e-9 * bin_hz, measured, near_in_band = 0.0, band
        cdef double tones_hz[2]
        cdef Py_ssize_t k
        tones_hz[0] = row_hz
        tones_hz[1] = col_hz
        sums[0] = 0.0
        for k in range(2):
            measured = tones_hz[k]
            sums[0] += _band_power(prefix, row, bin_hz, measured - lobe + edge, measured + lobe - edge, NULL)
            near_in_band += _band_power(
                prefix, row, bin_hz, max(measured - lobe + edge, self.band_lo), min(measured + lobe - edge, self.band_hi), NULL
            )
            sums[3 + k] = fabs(_peak_hz(power, row, bin_hz, measured, lobe - edge) - measured) / res
        band = _band_power(prefix, row, bin_hz, self.band_lo, self.band_hi, NULL)
        sums[1] = max(band - near_in_band, 0.0)
        sums[2] = _band_power(prefix, row, bin_hz, self.upper_lo + edge, self.upper_hi, NULL)
        # The comb (``ivrsim_comb``): over the fundamentals both tones fit closely, and apart over those they
        # fit widely, the one whose other harmonics stand out most from the spectrum halfway between them;
        # unless no comb can hold a voice's share (``_comb_room``), as on a key with only noise beside it.
        if self._comb_room(prefix, row, bin_hz, res, row_hz, col_hz) < 0.5 * self.min_comb_share * sums[0]:
            sums[5] = sums[6] = sums[7] = sums[8] = 0.0
            return
        ivrsim_comb(&prefix[row, 0], prefix.shape[1] - 1, bin_hz, res, lobe, row_hz, col_hz, &self.comb_limits, &sums[5])

    cdef inline double _comb_room(self, const double[:, ::1] prefix, Py_ssize_t row, double bin_hz, double res, double row_hz,
                                  double col_hz) noexcept nogil:
        """The most power any comb of ``ivrsim_comb`` can hold (its harmonics' bands but the two tones'), or
        infinity where it cannot be bounded.

        Every fundamental tried fits each tone within ``comb_wide_match_pct`` (m), so its other harmonics
        lie at least ``comb_min_f0_hz - tone * m / (1 - m)`` from each tone: their bands (half a resolution
        each side) leave a neighbourhood of each tone free, a bin narrower still for the bins' centres. Nor
        do two harmonics' bands share a bin while a resolution and a bin fit between them. Then the comb
        band (a resolution wider each side) less the tones' neighbourhoods bounds the comb's power."""
        cdef double row_free = self.comb_min_f0_hz - row_hz * self.comb_tone_slack - 0.5 * res - bin_hz
        cdef double col_free = self.comb_min_f0_hz - col_hz * self.comb_tone_slack - 0.5 * res - bin_hz
        if not (res + bin_hz < self.comb_min_f0_hz and row_free > 0.0 and col_free > 0.0):
            return INFINITY
        return (
            _band_power(prefix, row, bin_hz, self.comb_lo - res, self.comb_hi + res, NULL)
            - _band_power(prefix, row, bin_hz, row_hz - row_free, row_hz + row_free, NULL)
            - _band_power(prefix, row, bin_hz, col_hz - col_free, col_hz + col_free, NULL)
        )

    def call_progress_present(self, const float[::1] flat, const long[:, ::1] spans, tuple pairs_hz):
        """Which spans of ``flat`` hold one of ``pairs_hz``: both tones peak within half a resolution of their
        nominal frequency, within 10 dB of each other. A voice seldom puts two harmonics there (it takes a 20 Hz
        fundamental, or a low voice whose other harmonics fill the band anyway)."""
        present_array = np.zeros(spans.shape[0], dtype=bool)
        cdef unsigned char[::1] present = present_array.view(np.uint8)
        cdef const float complex[:, ::1] spectra
        cdef float[:, ::1] power
        cdef double[:, ::1] prefix
        cdef double bin_hz, res, lobe_a, lobe_b, tone_a, tone_b
        cdef Py_ssize_t row, i, length, n = flat.shape[0]
        for size, rows in self._by_size(flat, spans).items():
            spectra_array, power_array, prefix_array, bin_hz = self._spectra(flat, spans, rows, size)
            spectra = spectra_array
            power = power_array
            prefix = prefix_array
            for row, i in enumerate(rows):
                length = _stretch_length(spans, i, n)
                res = self.rate_hz / length
                _power_row(spectra, row, power, prefix)
                for tone_a, tone_b in pairs_hz:
                    lobe_a = _band_power(prefix, 0, bin_hz, tone_a - 2.2 * res, tone_a + 2.2 * res, NULL)
                    lobe_b = _band_power(prefix, 0, bin_hz, tone_b - 2.2 * res, tone_b + 2.2 * res, NULL)
                    if (
                        fabs(_peak_hz(power, 0, bin_hz, tone_a, 2.2 * res) - tone_a) <= 0.5 * res
                        and fabs(_peak_hz(power, 0, bin_hz, tone_b, 2.2 * res) - tone_b) <= 0.5 * res
                        and lobe_a <= 10.0 * lobe_b
                        and lobe_b <= 10.0 * lobe_a
                    ):
                        present[i] = 1
        return present_array

    cdef void _longest_unbroken(self, const float[::1] flat, Py_ssize_t first, Py_ssize_t last, Py_ssize_t* out):
        """The longest stretch of ``flat[first:last]`` without a dropout, into out (first, last).

        A break too short to split the tone's windows (under about 10 ms) still splatters its spectrum: the
        purity check must not look across it. Half-blocks whose power falls below ``dropout_power`` of the
        median half-block's are breaks; the stretch returned lies between two of them."""
        cdef Py_ssize_t count = (min(last, flat.shape[0]) - first) // self.m, b, previous = -1, longest = -1
        out[0] = first
        out[1] = last
        if count < 3 or first < 0:
            return
        cdef double[::1] power = np.empty(count)
        cdef double median = _block_powers(flat, first, count, self.m, power)
        # Pieces between low blocks (bounds -1 and count at the ends): the first longest wins.
        cdef Py_ssize_t best_start = -1, best_end = count, low_seen = 0
        for b in range(count + 1):
            if b == count or power[b] < self.dropout_power * median:
                if b < count:
                    low_seen += 1
                if b - previous > longest:
                    longest = b - previous
                    best_start = previous
                    best_end = b
                previous = b
        if low_seen == 0:
            return
        out[0] = first + (best_start + 1) * self.m
        out[1] = last if best_end == count else first + best_end * self.m

    # -- the judgement --------------------------------------------------------------------------------

    cdef tuple _judge(
        self,
        const float complex[:, ::1] hann,
        const float[::1] flat,
        const long[::1] firsts,
        const long[::1] lasts,
        const long[::1] run_labels,
        const double[::1] starts,
        const double[::1] ends,
        const long[::1] order,
        const long[::1] segment_starts,
        object notch_sections,
    ):
        """Judge segments: runs ``order[segment_starts[k]:segment_starts[k + 1]]`` (of ``firsts``, ``lasts``,
        ``run_labels``, ``starts``/``ends`` in half-blocks) make segment k; window spectra ``hann``, samples
        ``flat``. Levels are corrected for ``notch_sections`` (second-order sections, (k, 6)) when the
        samples went through them. Returns ``(ok, hz, dbm0)``: bool (segments,), measured frequencies and
        levels (segments, 2)."""
        cdef Py_ssize_t count = segment_starts.shape[0], runs = order.shape[0], s, k, r0, r1, i, best_run
        ok_array = np.zeros(count, dtype=bool)
        hz_array = np.zeros((count, 2))
        dbm0_array = np.zeros((count, 2))
        cdef double[:, ::1] hz = hz_array
        cdef double[:, ::1] dbm0 = dbm0_array
        cdef const double[:, ::1] sections
        cdef double measured[6]
        cdef double nominal, twist, longest_run
        cdef bint passed, swells
        cdef long tone
        cdef long tones[2]
        cdef Py_ssize_t first, last
        cdef Py_ssize_t lone_break[2]
        cdef Py_ssize_t whole[2]
        if notch_sections is not None:
            sections = np.ascontiguousarray(notch_sections, dtype=np.float64)
        survivors_array = np.empty(count, dtype=np.int64)
        spans_array = np.empty((count, 2), dtype=np.int64)
        cdef long[::1] survivors = survivors_array
        cdef long[:, ::1] spans = spans_array
        cdef Py_ssize_t kept = 0
        for s in range(count):
            r0 = segment_starts[s]
            r1 = segment_starts[s + 1] if s + 1 < count else runs
            passed = True
            swells = False
            tones[0] = run_labels[order[r0]] // 4
            tones[1] = 4 + run_labels[order[r0]] % 4
            for k in range(2):
                tone = tones[k]
                self._measure(hann, firsts, lasts, order, r0, r1, tone, measured)
                swells = swells or measured[4] > self.max_level_spread
                nominal = self.nominal_hz[tone]
                hz[s, k] = nominal + measured[0]
                dbm0[s, k] = 10.0 * log10(max(measured[2], 1e-30) / self.zero_dbm0_power)
                if notch_sections is not None:
                    dbm0[s, k] -= 20.0 * log10(max(_sos_gain(sections, hz[s, k] / self.rate_hz), 1e-6))
                passed = (
                    passed
                    and measured[5] > 0.0
                    and fabs(measured[0]) <= nominal * self.max_deviation_pct / 100.0
                    and measured[1] >= self.min_coherence
                    and fabs(measured[3]) <= self.max_drift_hz
                )
            twist = dbm0[s, 0] - dbm0[s, 1]
            passed = passed and twist <= self.max_normal_twist_db and -twist <= self.max_reverse_twist_db
            passed = passed and not _harmonic(hz[s, 1] / hz[s, 0], self.harmonic_ratios)
            if passed and swells:
                # The level moved: a swell, or windows a short break dimmed too little to be left out.
                if self._lone_break(flat, self._sample(starts[order[r0]]), self._sample(ends[order[r1 - 1]]), lone_break):
                    swells = False
                    for k in range(2):
                        self._measure(hann, firsts, lasts, order, r0, r1, tones[k], measured, lone_break[0], lone_break[1])
                        swells = swells or measured[4] > self.max_level_spread
            if not passed or swells or not self._holds(flat, firsts, lasts, starts, ends, order, r0, r1):
                continue
            # Purity over the longest unbroken stretch of the tone, where a bridged dropout cannot splatter
            # the spectrum. When that stretch is too short to resolve close partials and the gaps between
            # runs are not quiet (beating partials, not a dropout), over the whole segment instead.
            best_run = order[r0]
            longest_run = ends[best_run] - starts[best_run]
            for i in range(r0 + 1, r1):
                if ends[order[i]] - starts[order[i]] > longest_run:
                    best_run = order[i]
                    longest_run = ends[best_run] - starts[best_run]
            first = self._sample(starts[best_run]) + self.purity_edge
            last = self._sample(ends[best_run]) - self.purity_edge
            if last - first < self.purity_shortest and r1 - r0 > 1:
                if not self._gaps_quiet(flat, starts, ends, order, r0, r1, False):
                    first = self._sample(starts[order[r0]]) + self.purity_edge
                    last = self._sample(ends[order[r1 - 1]]) - self.purity_edge
            survivors[kept] = s
            spans[kept, 0] = first
            spans[kept, 1] = max(min(last, first + self.purity_longest), first + 2)
            kept += 1
        if kept == 0:
            return ok_array, hz_array, dbm0_array
        survivors_array = survivors_array[:kept]
        pure = self.purity(flat, spans[:kept], hz, survivors[:kept])
        # A break too short to split the windows (about 5 ms) stays inside the stretch and splatters its
        # spectrum: a tone that fails gets a second look over its longest stretch between such breaks.
        cdef Py_ssize_t piece[2]
        again, pieces = [], []
        cdef unsigned char[::1] pure_view = pure.view(np.uint8)
        for k in range(kept):
            if pure_view[k] or spans[k, 1] - spans[k, 0] <= self.purity_shortest:
                continue
            self._longest_unbroken(flat, spans[k, 0], spans[k, 1], piece)
            if (piece[0], piece[1]) != (spans[k, 0], spans[k, 1]) and piece[1] - piece[0] >= self.purity_shortest:
                again.append(k)
                pieces.append((piece[0], piece[1]))
        if again:
            pure[again] = self.purity(flat, np.array(pieces, dtype=np.int64).reshape(-1, 2), hz, survivors_array[again])
        # Last looks, over each segment's whole stretch, a lone break in it (``_lone_break``) filled with the
        # pair fitted to the samples around it (``_fill_break``):
        # - a tone that still fails: a break of a few ms splatters the spectrum whatever stretch holds it.
        #   A key's pair is whole again; a voice keeps every partial it had outside the break.
        # - a tone that passed on a stretch too short for the comb (``comb_min_samples``; quiet gaps between
        #   a low voice's pitch pulses can break its runs into pieces): the comb alone.
        repaired = None
        again, pieces, comb_again, comb_pieces = [], [], [], []
        cdef bint short
        for k in range(kept):
            short = pure_view[k] and spans[k, 1] - spans[k, 0] < self.comb_min_samples
            if pure_view[k] and not short:
                continue
            s = survivors[k]
            self._whole_stretch(order, segment_starts, starts, ends, s, whole)
            if short and whole[1] - whole[0] < self.comb_min_samples:
                continue
            if self._lone_break(flat, whole[0], whole[1], lone_break):
                if repaired is None:
                    repaired = np.array(flat)
                _fill_break(repaired, whole[0], whole[1], lone_break[0], lone_break[1], hz[s, 0], hz[s, 1], self.rate_hz)
            elif not short:
                continue
            (comb_again if short else again).append(k)
            (comb_pieces if short else pieces).append((whole[0], whole[1]))
        if again:
            pure[again] = self.purity(repaired, np.array(pieces, dtype=np.int64).reshape(-1, 2), hz, survivors_array[again])
        if comb_again:
            pure[comb_again] = self.purity(
                flat if repaired is None else repaired, np.array(comb_pieces, dtype=np.int64).reshape(-1, 2),
                hz, survivors_array[comb_again], True,
            )
        ok_array[survivors_array] = pure
        return ok_array, hz_array, dbm0_array

    cdef inline void _whole_stretch(self, const long[::1] order, const long[::1] segment_starts, const double[::1] starts,
                                    const double[::1] ends, Py_ssize_t s, Py_ssize_t* out) noexcept nogil:
        """Segment ``s``'s whole stretch in samples (its runs ``order[segment_starts[s]:...]``), its edges left
        out, ``purity_longest`` at most: out = (first, last)."""
        cdef Py_ssize_t r0 = segment_starts[s]
        cdef Py_ssize_t r1 = segment_starts[s + 1] if s + 1 < segment_starts.shape[0] else order.shape[0]
        out[0] = self._sample(starts[order[r0]]) + self.purity_edge
        out[1] = min(self._sample(ends[order[r1 - 1]]) - self.purity_edge, out[0] + self.purity_longest)

    # -- stage 4 and the decisions --------------------------------------------------------------------

    cdef tuple decide(
        self,
        const signed char[::1] labels,
        const float complex[:, ::1] spectra,
        const float complex[:, ::1] hann,
        const float[::1] flat,
        Py_ssize_t count,
        long first,
        long decided_through,
        long decision_due,
        bint final,
    ):
        """Stage 4 over the history's ``count`` half-blocks (``labels``, ``spectra``, ``hann`` and the samples
        ``flat`` of the history, the first being absolute half-block ``first``); stages 5 and 6 on every
        segment that can no longer grow (all of them when ``final``), unless its last window is at or
        before ``decided_through`` (absolute).

        A segment that fails with a busy or reorder tone sounding is judged again with that tone notched
        out (``notch``): its 620 Hz lies inside the analysis lobe of 697 Hz and in the purity band, where
        it reads as a second voice.

        Returns ``(digits, keep_from, undecided, decision_due, decided_through)``: the ``digit_type``
        instances (times from the stream's start); the first half-block the history must keep; whether a
        segment is still open, and the absolute window count at which it may have settled; the last window
        decided.
        """
        cdef Py_ssize_t windows = max(count - 1, 0), keep_from = max(windows - 2, 0), run_count, r, r0, r1, i, last_run
        cdef bint undecided = False
        run_count = runs_and_segments(labels[:windows], spectra[:count], self.bridge, self.runs)
        cdef const long[::1] firsts = self.runs.firsts[:run_count]
        cdef const long[::1] lasts = self.runs.lasts[:run_count]
        cdef const long[::1] segment_of_run = self.runs.segment_of_run[:run_count]
        cdef const long[::1] run_labels = self.runs.labels[:run_count]
        cdef const double[::1] starts = self.runs.starts[:run_count]
        cdef const double[::1] ends = self.runs.ends[:run_count]
        # Kept runs in order, and where each ready segment's runs begin among them.
        cdef long[::1] order = self.runs.order
        cdef long[::1] segment_starts = self.runs.segment_starts
        cdef Py_ssize_t ordered = 0, segments = 0
        r = 0
        while r < run_count:
            if segment_of_run[r] < 0:
                r += 1
                continue
            r0 = r
            r1 = r + 1
            while r1 < run_count and (segment_of_run[r1] < 0 or segment_of_run[r1] == segment_of_run[r0]):
                r1 += 1
            last_run = r1 - 1
            while segment_of_run[last_run] < 0:
                last_run -= 1
            r = r1
            if first + lasts[last_run] <= decided_through:
                continue
            if not final and windows - 1 - lasts[last_run] < self.settle_windows:
                keep_from = min(keep_from, max(firsts[r0] - 2 - self.lead_half_blocks, 0))
                undecided = True
                decision_due = first + lasts[last_run] + self.settle_windows + 1
                break
            decided_through = first + lasts[last_run]
            if ends[last_run] - starts[r0] < self.min_tone_half_blocks:
                continue
            segment_starts[segments] = ordered
            segments += 1
            for i in range(r0, r1):
                if segment_of_run[i] >= 0:
                    order[ordered] = i
                    ordered += 1
        if segments == 0:
            return [], keep_from, undecided, decision_due, decided_through
        order = order[:ordered]
        segment_starts = segment_starts[:segments]
        cdef const float complex[:, ::1] hann_used = hann[:windows]
        cdef const float[::1] flat_used = flat[: count * self.m]
        ok, hz, dbm0 = self._judge(hann_used, flat_used, firsts, lasts, run_labels, starts, ends, order, segment_starts, None)
        if not ok.all():
            self._judge_without_call_progress(
                hann_used, flat_used, np.asarray(firsts), np.asarray(lasts), np.asarray(run_labels), np.asarray(starts),
                np.asarray(ends), np.asarray(order), np.asarray(segment_starts), ok, hz, dbm0,
            )
        cdef const double[:, ::1] hz_view = hz
        cdef const double[:, ::1] dbm0_view = dbm0
        cdef const unsigned char[::1] ok_view = ok.view(np.uint8)
        digits = []
        for k in range(segments):
            if not ok_view[k]:
                continue
            r0 = order[segment_starts[k]]
            r1 = order[segment_starts[k + 1] - 1] if k + 1 < segments else order[ordered - 1]
            digits.append(self._digit(run_labels[r0], first + starts[r0], first + ends[r1], hz_view[k, 0], hz_view[k, 1], dbm0_view[k, 0], dbm0_view[k, 1]))
        return digits, keep_from, undecided, decision_due, decided_through

    cdef object _digit(self, long label, double start, double end, double row_hz, double col_hz, double row_dbm0, double col_dbm0):
        """A ``DtmfDigit`` (``digit_type``, a frozen dataclass with slots), built without a Python frame: its
        seven slots written straight (``digit_slots``), start and end from half-blocks to seconds. It holds
        a string and floats only, so it can be in no reference cycle: the garbage collector need not track
        it (a decoded recording's thousands of digits would make every full collection walk them)."""
        cdef TypeAllocation* kind = <TypeAllocation*>self.digit_type
        cdef PyObject* o = kind.tp_alloc(kind, 0)  # what object.__new__ does for it, without the call
        if o == NULL:
            raise MemoryError()
        digit = <object>o
        Py_DECREF(digit)  # tp_alloc's reference, now held by ``digit``
        _set_slot(o, self.digit_slots[0], self.keys[label])
        _set_slot(o, self.digit_slots[1], start * self.seconds_per_half_block)
        _set_slot(o, self.digit_slots[2], end * self.seconds_per_half_block)
        _set_slot(o, self.digit_slots[3], row_hz)
        _set_slot(o, self.digit_slots[4], col_hz)
        _set_slot(o, self.digit_slots[5], row_dbm0)
        _set_slot(o, self.digit_slots[6], col_dbm0)
        PyObject_GC_UnTrack(o)
        return digit

    cdef void _judge_without_call_progress(
        self, hann, flat, firsts, lasts, run_labels, starts, ends, order, segment_starts, ok, hz, dbm0
    ):
        """Judge the failed segments again with the busy / reorder tone notched out around each where it
        sounds (from ``call_progress_lead_samples`` before it, for the notch to settle); update ``ok``,
        ``hz`` and ``dbm0`` in place."""
        cdef Py_ssize_t m = self.m, k, w, a, b
        failed = np.flatnonzero(~ok).tolist()
        bounds = np.append(segment_starts, len(order))
        spans = []
        for k in failed:
            r0, r1 = order[bounds[k]], order[bounds[k + 1] - 1]
            spans.append((int(starts[r0] * m), int(ceil(ends[r1] * m))))
        present = self.call_progress_present(flat, np.array(spans, dtype=np.int64).reshape(-1, 2), self.call_progress_pairs_hz)
        again = [k for k, sounds in zip(failed, present.tolist()) if sounds]
        if not again:
            return
        span_of = dict(zip(failed, spans))
        flat_clean, hann_clean = np.array(flat), np.array(hann)
        cdef float[::1] clean_samples = flat_clean
        cdef float complex[:, ::1] clean_hann = hann_clean
        cdef const float[:, ::1] hann_basis = self.hann_basis
        order_list, segment_list = [], []
        for k in again:
            a, b = span_of[k]
            a = max(a - self.call_progress_lead_samples, 0)
            b = min(b + m, len(flat))
            flat_clean[a:b] = self.notch.apply(np.asarray(flat[a:b]))
            segment_list.append(len(order_list))
            order_list += order[bounds[k] : bounds[k + 1]].tolist()
        for k in again:
            for i in order[bounds[k] : bounds[k + 1]].tolist():
                for w in range(firsts[i], lasts[i] + 1):
                    _dft_terms(&clean_samples[w * m], 2 * m, hann_basis, &clean_hann[w, 0])
        second_ok, second_hz, second_dbm0 = self._judge(
            hann_clean, flat_clean, firsts, lasts, run_labels, starts, ends,
            np.array(order_list, dtype=np.int64), np.array(segment_list, dtype=np.int64), self.notch.sections,
        )
        ok[again], hz[again], dbm0[again] = second_ok, second_hz, second_dbm0


def _fill_break(samples, Py_ssize_t a, Py_ssize_t b, Py_ssize_t start, Py_ssize_t end, double row_hz, double col_hz, double rate_hz):
    """Fill ``samples[start:end]`` (float32, in place) with the two tones at ``row_hz`` and ``col_hz`` fitted by
    least squares to the rest of ``samples[a:b]``."""
    x = samples[a:b]
    keep = np.ones(b - a, dtype=bool)
    keep[start - a : end - a] = False
    phase = np.outer(np.arange(b - a), 2.0 * np.pi / rate_hz * np.array([row_hz, col_hz]))
    design = np.hstack([np.cos(phase), np.sin(phase)])
    coefficients = np.linalg.lstsq(design[keep], x[keep].astype(np.float64), rcond=None)[0]
    x[~keep] = (design[~keep] @ coefficients).astype(np.float32)


@lru_cache(maxsize=1024)
def _hann_window(length):
    """A periodic Hann window of ``length`` samples, float32 (computed once per length, for every receiver)."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / max(length, 1))).astype(np.float32)
    window.flags.writeable = False
    return window


cdef double _sos_gain(const double[:, ::1] sections, double cycles_per_sample) noexcept nogil:
    """|H| of cascaded second-order sections (b0, b1, b2, a0, a1, a2) at a frequency, in cycles per sample."""
    cdef double complex z1 = cos(2.0 * M_PI * cycles_per_sample) - 1j * sin(2.0 * M_PI * cycles_per_sample)
    cdef double complex z2 = z1 * z1, h = 1.0
    cdef Py_ssize_t k
    for k in range(sections.shape[0]):
        h = h * (sections[k, 0] + sections[k, 1] * z1 + sections[k, 2] * z2) / (sections[k, 3] + sections[k, 4] * z1 + sections[k, 5] * z2)
    return sqrt(_abs2(h))


cdef inline Py_ssize_t _fft_size(Py_ssize_t samples) noexcept nogil:
    """The smallest power of two, or three times one, of at least ``samples``: pocketfft is as quick per point
    on both, and a 42 ms tone (671 points padded) takes 768 instead of 1,024."""
    cdef Py_ssize_t size = 1
    while size < samples:
        size <<= 1
    if size >= 4 and 3 * (size // 4) >= samples:
        return 3 * (size // 4)
    return size


cdef bint _harmonic(double ratio, const double[:, ::1] ratios) noexcept nogil:
    """Whether a column-over-row frequency ratio lies within tolerance (percent) of one of ``ratios``
    (ratio, tolerance_pct)."""
    cdef Py_ssize_t i
    for i in range(ratios.shape[0]):
        if fabs(ratio / ratios[i, 0] - 1.0) * 100 <= ratios[i, 1]:
            return True
    return False


def harmonic_pair(const double[:, ::1] tones_hz, ratios):
    """True for each (row, col) pair of frequencies (n, 2) whose ratio is one of ``ratios`` (see
    ``dtmf_receiver.harmonic_ratios``)."""
    cdef const double[:, ::1] table = np.ascontiguousarray(ratios, dtype=np.float64).reshape(-1, 2)
    result = np.zeros(tones_hz.shape[0], dtype=bool)
    cdef unsigned char[::1] out = result.view(np.uint8)
    cdef Py_ssize_t i
    for i in range(tones_hz.shape[0]):
        out[i] = _harmonic(tones_hz[i, 1] / tones_hz[i, 0], table)
    return result


cdef class ReceiverCore:
    """The streaming receiver's state and history, compiled: input gathered into chunks, stages 1-3 on each,
    the decisions (``SegmentJudge.decide``) when a segment may have settled, and the history trimmed to
    what a pending decision needs (``dtmf_receiver.DtmfReceiver`` says why and when).

    The history holds, from absolute half-block ``first``, ``count`` half-blocks' samples, energies and
    Goertzel terms, the labels and Hann terms of the windows they start, and after them the ``pending``
    samples of the next chunk. Digits come out as the judge's ``digit_type`` (``DtmfDigit``).
    """

    cdef SegmentJudge judge
    cdef Py_ssize_t m, chunk_samples, keep_idle, min_capacity, shrink_from
    cdef const float[:, ::1] basis
    cdef const float[:, ::1] hann_basis
    cdef const float complex[::1] hop_rotation
    cdef WindowThresholds thresholds
    cdef float[::1] samples
    cdef float[::1] energy
    cdef float complex[:, ::1] spectra
    cdef signed char[::1] labels
    cdef float complex[:, ::1] hann
    cdef Py_ssize_t capacity, count, pending, input_blocks
    cdef long first, decided_through, decision_due
    cdef bint undecided

    def __init__(self, SegmentJudge judge, Py_ssize_t half_block_samples, Py_ssize_t chunk_samples, Py_ssize_t keep_idle,
                 basis, hann_basis, hop_rotation, WindowThresholds thresholds, Py_ssize_t min_capacity, Py_ssize_t shrink_from):
        self.judge = judge
        self.m = half_block_samples
        self.chunk_samples = chunk_samples
        self.keep_idle = keep_idle
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.hann_basis = np.ascontiguousarray(hann_basis, dtype=np.float32)
        self.hop_rotation = np.ascontiguousarray(hop_rotation, dtype=np.complex64)
        self.thresholds = thresholds
        self.min_capacity = min_capacity
        self.shrink_from = shrink_from
        self.reset()

    def reset(self):
        """Forget all state: the next sample fed is time zero."""
        self.count = 0
        self.pending = 0
        self.input_blocks = 0
        self._allocate(self.min_capacity)
        self.first = 0
        self.decided_through = -1
        self.decision_due = 0
        self.undecided = False

    cdef void _allocate(self, Py_ssize_t capacity):
        """Arrays for ``capacity`` half-blocks (samples: one more, for a chunk's partial half-block), keeping
        what the history holds."""
        cdef Py_ssize_t kept = self.count, kept_samples = self.count * self.m + self.pending
        samples = np.zeros((capacity + 1) * self.m, dtype=np.float32)
        energy = np.zeros(capacity, dtype=np.float32)
        spectra = np.zeros((capacity, 8), dtype=np.complex64)
        labels = np.full(capacity, -1, dtype=np.int8)
        hann = np.zeros((capacity, 8), dtype=np.complex64)
        if kept_samples > 0:
            samples[:kept_samples] = self.samples[:kept_samples]
        if kept > 0:
            energy[:kept] = self.energy[:kept]
            spectra[:kept] = self.spectra[:kept]
            labels[:kept] = self.labels[:kept]
            hann[:kept] = self.hann[:kept]
        self.samples, self.energy, self.spectra, self.labels, self.hann = samples, energy, spectra, labels, hann
        self.capacity = capacity

    cdef void _drop(self, Py_ssize_t blocks):
        """Forget the oldest ``blocks`` half-blocks; give back what a long tone grew (a held key is state for
        a tone in progress, never for the rest of the call)."""
        if blocks <= 0:
            return
        cdef Py_ssize_t keep = self.count - blocks, m = self.m
        memmove(&self.samples[0], &self.samples[blocks * m], (keep * m + self.pending) * sizeof(float))
        if keep > 0:
            memmove(&self.energy[0], &self.energy[blocks], keep * sizeof(float))
            memmove(&self.spectra[0, 0], &self.spectra[blocks, 0], keep * 8 * sizeof(float complex))
            memmove(&self.labels[0], &self.labels[blocks], keep * sizeof(signed char))
            memmove(&self.hann[0, 0], &self.hann[blocks, 0], keep * 8 * sizeof(float complex))
        self.first += blocks
        self.count = keep
        # (Not below what the last input needed: batch decoding feeds seconds at a time, and would otherwise
        # shrink and regrow the arrays on every piece.)
        if self.capacity > self.shrink_from and 4 * max(keep, self.input_blocks) < self.capacity:
            self._allocate(max(self.min_capacity, 2 * keep, self.pending // m + 3))

    cdef void _append(self, const float[::1] x):
        """Store ``x`` after the pending samples, growing the arrays (doubling) when they are full."""
        cdef Py_ssize_t needed = self.count + (self.pending + x.shape[0]) // self.m + 3
        self.input_blocks = x.shape[0] // self.m + 1
        if needed > self.capacity:
            self._allocate(max(needed + self.min_capacity, 2 * self.capacity))
        if x.shape[0] > 0:
            memcpy(&self.samples[self.count * self.m + self.pending], &x[0], x.shape[0] * sizeof(float))
        self.pending += x.shape[0]

    cdef void _analyse(self, Py_ssize_t blocks):
        """Stages 1-3 over the next ``blocks`` half-blocks of the pending samples."""
        cdef Py_ssize_t position = self.count
        self.labels[position + blocks - 1] = -1  # the newest window, not complete yet (the others get labelled)
        memset(&self.hann[position, 0], 0, blocks * 8 * sizeof(float complex))
        self.count += blocks
        self.pending -= blocks * self.m
        if _analyse_blocks(
            self.samples, self.energy, self.spectra, self.labels, self.hann, self.m, position, self.count,
            self.basis, self.hann_basis, self.hop_rotation, self.thresholds,
        ) and not self.undecided:
            self.undecided = True
            self.decision_due = 0

    cdef list _decide(self, bint final):
        digits, keep_from, self.undecided, self.decision_due, self.decided_through = self.judge.decide(
            self.labels, self.spectra, self.hann, self.samples, self.count, self.first, self.decided_through,
            self.decision_due, final,
        )
        self._drop(keep_from)
        return digits

    def feed(self, const float[::1] x):
        """Take ``x`` (float32 samples); return the digits that ended."""
        if x.shape[0] == 0:
            return []
        self._append(x)
        if self.pending < self.chunk_samples:
            return []
        self._analyse(self.pending // self.m)
        if not self.undecided:
            # Nothing pending: keep only what the next chunk's first window and edge need.
            self._drop(self.count - self.keep_idle)
        elif self.first + self.count - 1 >= self.decision_due:
            return self._decide(False)
        return []

    def flush(self):
        """End of stream: the digits still pending; then reset."""
        cdef Py_ssize_t blocks = (self.pending + self.m - 1) // self.m + 2
        self._append(np.zeros(blocks * self.m - self.pending, dtype=np.float32))
        self._analyse(blocks)
        digits = self._decide(True)
        self.reset()
        return digits
