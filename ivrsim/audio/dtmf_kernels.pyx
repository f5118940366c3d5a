# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The DTMF receiver's inner loops, compiled (``dtmf_receiver`` holds the stages and their reasons).

Each kernel does what one stage does over plain arrays, for any number of windows, runs or segments: the
per-window classifier (stage 3), the runs, their edges and the segments they form (stage 4), the tone
measurements (stage 5) and the purity and harmonic-comb sums over a spectrum (stages 5 and 6). Written
with numpy alone, a streamed digit took a few hundred small numpy calls, a microsecond each, and a digit
every 100 ms held the receiver to about 60x real time; here a digit is a few calls. The matrix products
(the Goertzel bank, the Hann window DFTs) and the FFTs stay in numpy and scipy, whose BLAS and pocketfft
outrun plain loops on long signals.

Layout: spectra are complex64 (blocks, 8) in ``DTMF_FREQUENCIES_HZ`` order (four rows, four columns); a
digit's label is ``row * 4 + column`` (0-15); a run's tones are its row (0-3) and column (4-7) indices.
"""

import numpy as np

from libc.math cimport INFINITY, atan2, ceil, fabs, floor, rint, sqrt


cdef inline double _abs2(double complex z) nogil:
    return z.real * z.real + z.imag * z.imag


cdef inline double _angle(double complex z) nogil:
    return atan2(z.imag, z.real)


cdef inline void _dft_terms(const float* samples, Py_ssize_t length, const float[:, ::1] basis, float complex* out) noexcept nogil:
    """The DFT terms at the eight frequencies of ``basis`` (length, 16: cos and -sin interleaved)."""
    cdef float acc[16]
    cdef Py_ssize_t n, k
    cdef float x
    cdef const float* row
    for k in range(16):
        acc[k] = 0.0
    for n in range(length):
        x = samples[n]
        row = &basis[n, 0]
        for k in range(16):
            acc[k] += x * row[k]
    for k in range(8):
        out[k].real = acc[2 * k]
        out[k].imag = acc[2 * k + 1]


cdef class WindowThresholds:
    """``WindowClassifier``'s thresholds, scaled to raw window energies."""

    cdef public double min_tone_energy, normal_twist, reverse_twist, relative_peak, share_scale

    def __init__(self, double min_tone_energy, double normal_twist, double reverse_twist, double relative_peak, double share_scale):
        self.min_tone_energy = min_tone_energy
        self.normal_twist = normal_twist
        self.reverse_twist = reverse_twist
        self.relative_peak = relative_peak
        self.share_scale = share_scale


cdef inline signed char _classify(const float complex* earlier, const float complex* later, double energy, const float complex[::1] hop_rotation, WindowThresholds t) noexcept:
    """Stage 3 for one window: its digit (row * 4 + column), or -1."""
    cdef double power[8]
    cdef double top[2]
    cdef double second[2]
    cdef int best[2]
    cdef Py_ssize_t g, k
    cdef double v
    cdef double complex y
    for k in range(8):
        y = <double complex>earlier[k] + <double complex>later[k] * <double complex>hop_rotation[k]
        power[k] = _abs2(y)
    for g in range(2):
        top[g] = -1.0
        second[g] = -1.0
        best[g] = 0
        for k in range(4):
            v = power[4 * g + k]
            if v > top[g]:
                second[g] = top[g]
                top[g] = v
                best[g] = k
            elif v > second[g]:
                second[g] = v
    if (
        top[0] >= t.min_tone_energy
        and top[1] >= t.min_tone_energy
        and top[0] <= top[1] * t.normal_twist
        and top[1] <= top[0] * t.reverse_twist
        and second[0] * t.relative_peak <= top[0]
        and second[1] * t.relative_peak <= top[1]
        and top[0] + top[1] >= t.share_scale * energy
    ):
        return <signed char>(best[0] * 4 + best[1])
    return -1


def analyse_blocks(
    float[:, ::1] samples,
    float[::1] energy,
    float complex[:, ::1] spectra,
    signed char[::1] labels,
    float complex[:, ::1] hann,
    Py_ssize_t position,
    Py_ssize_t count,
    const float[:, ::1] basis,
    const float[:, ::1] hann_basis,
    const float complex[::1] hop_rotation,
    WindowThresholds thresholds,
):
    """Stages 1-3 over the history's half-blocks ``position .. count - 1`` (new, samples already stored).

    Each one's energy and Goertzel terms (``basis``: half-block length x 16, cos and -sin interleaved) are
    stored; NaN or infinite samples are set to zero first (silence, not a crash). Every window the new
    half-blocks complete (from ``position - 1``) is labelled (stage 3), and each window that holds a digit
    gets its Hann-windowed terms (``hann_basis``: two half-blocks x 16). Returns how many windows hold a
    digit.
    """
    cdef Py_ssize_t m = samples.shape[1], b, n, w, found = 0
    cdef double e
    cdef float x
    cdef bint finite
    for b in range(position, count):
        e = 0.0
        finite = True
        for n in range(m):
            x = samples[b, n]
            if not (x - x == 0.0):  # NaN or infinite
                samples[b, n] = 0.0
                x = 0.0
            e += <double>x * x
        energy[b] = <float>e
        _dft_terms(&samples[b, 0], m, basis, &spectra[b, 0])
    for w in range(max(position - 1, 0), count - 1):
        labels[w] = _classify(&spectra[w, 0], &spectra[w + 1, 0], <double>energy[w] + <double>energy[w + 1], hop_rotation, thresholds)
        if labels[w] >= 0:
            # Half-blocks w and w + 1 are consecutive rows: one stretch of two half-blocks.
            _dft_terms(&samples[w, 0], 2 * m, hann_basis, &hann[w, 0])
            found += 1
    return found


cdef inline double _fill(const float complex[:, ::1] spectra, Py_ssize_t block, long row, long col, double ref_row, double ref_col) nogil:
    """Share of a half-block a tone fills: its magnitude over the run's reference, averaged over both tones."""
    cdef double share
    if block < 0 or block >= spectra.shape[0]:
        return 0.0
    share = 0.5 * (
        sqrt(_abs2(<double complex>spectra[block, row])) / ref_row + sqrt(_abs2(<double complex>spectra[block, col])) / ref_col
    )
    return min(max(share, 0.0), 1.0)


cdef inline double _magnitude(const float complex[:, ::1] spectra, Py_ssize_t block, long tone) nogil:
    if block < 0 or block >= spectra.shape[0]:
        return 0.0
    return sqrt(_abs2(<double complex>spectra[block, tone]))


def runs_and_segments(const signed char[::1] labels, const float complex[:, ::1] half_spectra, double bridge):
    """Stage 4: runs of windows with one digit, where each tone starts and ends, and the segments they form.

    ``labels`` (windows,) are the classifier's; ``half_spectra`` (half-blocks, 8) the Goertzel terms of the
    half-blocks (at least windows + 1 of them). See ``dtmf_receiver.refine_edges`` for the edge rule and
    ``bridge_runs`` for the grouping. Returns ``(firsts, lasts, run_labels, starts, ends, segment_of_run)``:
    each run's first and last window, its label, its measured start and end in half-blocks, and the
    segment it belongs to (-1 for a run dropped inside a bridged gap); segments are numbered in order.
    """
    cdef Py_ssize_t windows = labels.shape[0]
    firsts_array = np.empty(windows, dtype=np.int64)
    lasts_array = np.empty(windows, dtype=np.int64)
    labels_array = np.empty(windows, dtype=np.int64)
    starts_array = np.empty(windows, dtype=np.float64)
    ends_array = np.empty(windows, dtype=np.float64)
    segment_array = np.empty(windows, dtype=np.int64)
    # Open segments (the chain a new run may join), as the index of their first run and their end.
    open_first_array = np.empty(windows, dtype=np.int64)
    open_end_array = np.empty(windows, dtype=np.float64)
    cdef long[::1] firsts = firsts_array
    cdef long[::1] lasts = lasts_array
    cdef long[::1] run_labels = labels_array
    cdef double[::1] starts = starts_array
    cdef double[::1] ends = ends_array
    cdef long[::1] segment_of_run = segment_array
    cdef long[::1] open_first = open_first_array
    cdef double[::1] open_end = open_end_array
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
    return (
        firsts_array[:runs],
        lasts_array[:runs],
        labels_array[:runs],
        starts_array[:runs],
        ends_array[:runs],
        segment_array[:runs],
    )


cdef inline void _drop_segment(long[::1] segment_of_run, Py_ssize_t before, long segment) nogil:
    cdef Py_ssize_t r
    for r in range(before):
        if segment_of_run[r] == segment:
            segment_of_run[r] = -1


def measure_tones(
    const float complex[:, ::1] hann,
    const long[::1] firsts,
    const long[::1] lasts,
    const long[:, ::1] tones,
    const long[::1] segment_starts,
    const float complex[::1] hop_rotation,
    double to_hz,
    const double[::1] response,
    double response_first_hz,
    double response_step_hz,
    double gain,
    double max_turn_deviation_rad,
    double dropout_magnitude,
):
    """Stage 5: each segment's two tones from window spectra ``hann`` (see ``dtmf_receiver.ToneMeter``).

    Runs ``firsts``/``lasts`` with their ``tones`` (runs, 2) are ordered by segment; segment k's runs begin
    at ``segment_starts[k]``. Returns arrays (segments, 2): offset from nominal in Hz, coherence, power
    (amplitude squared over two, full scale 1.0), drift between the halves in Hz (infinite where a half
    has no steady turn), level spread; and ``valid`` (segments,).
    """
    cdef Py_ssize_t count = segment_starts.shape[0], runs = firsts.shape[0]
    offset_array = np.zeros((count, 2))
    coherence_array = np.zeros((count, 2))
    power_array = np.zeros((count, 2))
    drift_array = np.zeros((count, 2))
    spread_array = np.zeros((count, 2))
    valid_array = np.ones(count, dtype=bool)
    cdef double[:, ::1] offset_hz = offset_array
    cdef double[:, ::1] coherence = coherence_array
    cdef double[:, ::1] power = power_array
    cdef double[:, ::1] drift_hz = drift_array
    cdef double[:, ::1] level_spread = spread_array
    cdef unsigned char[::1] valid = valid_array.view(np.uint8)
    cdef Py_ssize_t s, k, r, w, first_run, end_run, rank, turn_count, inner_count, every_count, lit_count, early_count, late_count, cell
    cdef long tone
    cdef double complex turn, total, rotation, early, late, reference
    cdef double magnitude_total, inner_power, every_power, mean_sq, mean, mag, lit_sum, lit_square, lit_mean, spread
    cdef double offset, response_at, position, fraction, amplitude
    cdef Py_ssize_t last_cell = response.shape[0] - 1
    with nogil:
        for s in range(count):
            first_run = segment_starts[s]
            end_run = segment_starts[s + 1] if s + 1 < count else runs
            for k in range(2):
                tone = tones[first_run, k]
                rotation = hop_rotation[tone]
                # Phase turns between consecutive windows of each run: frequency, coherence, drift.
                total = 0.0
                magnitude_total = 0.0
                turn_count = 0
                for r in range(first_run, end_run):
                    for w in range(firsts[r], lasts[r]):
                        turn = <double complex>(hann[w + 1, tone] * hann[w, tone].conjugate())
                        total = total + turn
                        magnitude_total += sqrt(_abs2(turn))
                        turn_count += 1
                total = total * rotation
                reference = total.conjugate() * rotation
                early = 0.0
                late = 0.0
                early_count = 0
                late_count = 0
                rank = 0
                for r in range(first_run, end_run):
                    for w in range(firsts[r], lasts[r]):
                        turn = <double complex>(hann[w + 1, tone] * hann[w, tone].conjugate())
                        if fabs(_angle(turn * reference)) < max_turn_deviation_rad:
                            if 2 * rank < turn_count:
                                early = early + turn
                                early_count += 1
                            else:
                                late = late + turn
                                late_count += 1
                        rank += 1
                if early_count > 0 and late_count > 0:
                    drift_hz[s, k] = _angle(late * rotation * (early * rotation).conjugate()) * to_hz
                else:
                    drift_hz[s, k] = INFINITY
                # Level: mean power over the windows inside the runs (or all of them), and its spread over
                # the inside windows a dropout does not dim.
                inner_power = 0.0
                inner_count = 0
                mean = 0.0
                every_power = 0.0
                every_count = 0
                for r in range(first_run, end_run):
                    for w in range(firsts[r], lasts[r] + 1):
                        mag = sqrt(_abs2(<double complex>hann[w, tone]))
                        every_power += mag * mag
                        every_count += 1
                        if firsts[r] < w < lasts[r]:
                            inner_power += mag * mag
                            mean += mag
                            inner_count += 1
                if inner_count > 0:
                    mean_sq = inner_power / inner_count
                    mean = mean / inner_count
                else:
                    mean_sq = every_power / every_count if every_count > 0 else 0.0
                lit_sum = 0.0
                lit_square = 0.0
                lit_count = 0
                for r in range(first_run, end_run):
                    for w in range(firsts[r] + 1, lasts[r]):
                        mag = sqrt(_abs2(<double complex>hann[w, tone]))
                        if mag >= dropout_magnitude * mean:
                            lit_sum += mag
                            lit_square += mag * mag
                            lit_count += 1
                if lit_count > 1:
                    lit_mean = lit_sum / lit_count
                    spread = sqrt(max(lit_square / lit_count - lit_mean * lit_mean, 0.0))
                    level_spread[s, k] = spread / max(lit_mean, 1e-30)
                else:
                    level_spread[s, k] = 0.0
                offset = _angle(total) * to_hz
                offset_hz[s, k] = offset
                coherence[s, k] = sqrt(_abs2(total)) / max(magnitude_total, 1e-30)
                if not magnitude_total > 0.0:
                    valid[s] = 0
                # The window's response at the measured offset, interpolated (clamped at the table's ends).
                position = (offset - response_first_hz) / response_step_hz
                if position <= 0.0:
                    response_at = response[0]
                elif position >= last_cell:
                    response_at = response[last_cell]
                else:
                    cell = <Py_ssize_t>floor(position)
                    fraction = position - cell
                    response_at = response[cell] + fraction * (response[cell + 1] - response[cell])
                amplitude = 2.0 * sqrt(mean_sq) / (gain * max(response_at, 1e-6))
                power[s, k] = amplitude * amplitude / 2.0
    return offset_array, coherence_array, power_array, valid_array, drift_array, spread_array


cdef inline double _band_power(const float[:, ::1] power, Py_ssize_t row, double bin_hz, double low_hz, double high_hz, Py_ssize_t* bins_out) nogil:
    """Power of one spectrum in [low_hz, high_hz]: the bins whose centres lie inside (``StretchSpectra``)."""
    cdef Py_ssize_t bins = power.shape[1], first, last, i
    cdef double total = 0.0
    first = <Py_ssize_t>min(max(ceil(low_hz / bin_hz), 0.0), <double>bins)
    last = <Py_ssize_t>min(max(floor(high_hz / bin_hz) + 1.0, 0.0), <double>bins)
    if last < first:
        last = first
    for i in range(first, last):
        total += power[row, i]
    if bins_out != NULL:
        bins_out[0] = last - first
    return total


cdef inline double _peak_hz(const float[:, ::1] power, Py_ssize_t row, double bin_hz, double center_hz, double half_width_hz) nogil:
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


def band_power(const float[:, ::1] power, double bin_hz, const double[::1] low_hz, const double[::1] high_hz):
    """Power of each spectrum (row of ``power``, bins ``bin_hz`` apart) in [low_hz[row], high_hz[row]]."""
    result = np.zeros(power.shape[0])
    cdef double[::1] out = result
    cdef Py_ssize_t row
    for row in range(power.shape[0]):
        out[row] = _band_power(power, row, bin_hz, low_hz[row], high_hz[row], NULL)
    return result


def peak_hz(const float[:, ::1] power, double bin_hz, double center_hz, const double[::1] half_width_hz):
    """Frequency of each spectrum's strongest bin within ``half_width_hz[row]`` of ``center_hz``: (rows,)."""
    result = np.zeros(power.shape[0])
    cdef double[::1] out = result
    cdef Py_ssize_t row
    for row in range(power.shape[0]):
        out[row] = _peak_hz(power, row, bin_hz, center_hz, half_width_hz[row])
    return result


def stretch_purity(
    const float[:, ::1] power,
    double bin_hz,
    const double[::1] resolution_hz,
    const double[:, ::1] measured_hz,
    tuple dtmf_band_hz,
    tuple upper_band_hz,
    tuple comb_band_hz,
    double comb_min_f0_hz,
    double comb_match_pct,
    long comb_max_row_harmonic,
    const double[::1] call_progress_tones_hz,
):
    """Purity sums of spectra of one FFT size (see ``dtmf_receiver.tone_purity`` and ``harmonic_comb``).

    ``power`` (stretches, bins) are Hann-windowed power spectra; ``resolution_hz`` each stretch's rate over
    its length; ``measured_hz`` (stretches, 2) its tones. Returns ``(tones, residual, upper, peak_miss,
    comb, contrast)``: the power in the tones' lobes, what is left in the DTMF band, the power above it,
    each peak's distance from its tone in resolutions (stretches, 2), the other harmonics' power and
    their contrast (zero where no fundamental fits both tones).
    """
    cdef Py_ssize_t n = power.shape[0], row, k, p, i
    tones_array = np.zeros(n)
    residual_array = np.zeros(n)
    upper_array = np.zeros(n)
    miss_array = np.zeros((n, 2))
    comb_array = np.zeros(n)
    contrast_array = np.zeros(n)
    cdef double[::1] tones = tones_array
    cdef double[::1] residual = residual_array
    cdef double[::1] upper = upper_array
    cdef double[:, ::1] peak_miss = miss_array
    cdef double[::1] comb = comb_array
    cdef double[::1] contrast = contrast_array
    cdef double band_lo = dtmf_band_hz[0], band_hi = dtmf_band_hz[1]
    cdef double upper_lo = upper_band_hz[0], upper_hi = upper_band_hz[1]
    cdef double comb_lo = comb_band_hz[0], comb_hi = comb_band_hz[1]
    cdef Py_ssize_t numbers = <Py_ssize_t>floor(comb_hi / comb_min_f0_hz)
    cdef Py_ssize_t tones_count = call_progress_tones_hz.shape[0]
    cdef double res, lobe, edge, measured, near_in_band, band, f0, q, miss, on_hz, off_hz
    cdef double on_power, off_power, candidate_contrast, best_contrast, best_power
    cdef Py_ssize_t on_bins, off_bins, bins_here, number
    cdef bint usable_on, usable_off, found
    with nogil:
        for row in range(n):
            res = resolution_hz[row]
            lobe = 2.2 * res
            edge = 1e-9 * bin_hz
            near_in_band = 0.0
            for k in range(2):
                measured = measured_hz[row, k]
                tones[row] += _band_power(power, row, bin_hz, measured - lobe + edge, measured + lobe - edge, NULL)
                near_in_band += _band_power(
                    power, row, bin_hz, max(measured - lobe + edge, band_lo), min(measured + lobe - edge, band_hi), NULL
                )
                peak_miss[row, k] = fabs(_peak_hz(power, row, bin_hz, measured, lobe - edge) - measured) / res
            band = _band_power(power, row, bin_hz, band_lo, band_hi, NULL)
            residual[row] = max(band - near_in_band, 0.0)
            upper[row] = _band_power(power, row, bin_hz, upper_lo + edge, upper_hi, NULL)
            # The harmonic comb: over the fundamentals both tones fit, the one whose other harmonics stand
            # out most from the spectrum halfway between them (ties: the higher harmonic number p).
            found = False
            best_contrast = 0.0
            best_power = 0.0
            for p in range(1, comb_max_row_harmonic + 1):
                f0 = measured_hz[row, 0] / p
                q = rint(measured_hz[row, 1] / f0)
                miss = fabs(measured_hz[row, 1] / (q * f0) - 1.0) * 100.0
                if not (f0 >= comb_min_f0_hz and q > p and miss <= comb_match_pct):
                    continue
                on_power = 0.0
                off_power = 0.0
                on_bins = 0
                off_bins = 0
                for number in range(1, numbers + 1):
                    on_hz = number * f0
                    off_hz = (number + 0.5) * f0
                    usable_on = comb_lo <= on_hz <= comb_hi and number != p and number != q
                    usable_off = comb_lo <= off_hz <= comb_hi
                    for i in range(tones_count):
                        if fabs(on_hz - call_progress_tones_hz[i]) < lobe:
                            usable_on = False
                        if fabs(off_hz - call_progress_tones_hz[i]) < lobe:
                            usable_off = False
                    if usable_on:
                        on_power += _band_power(power, row, bin_hz, on_hz - 0.5 * res, on_hz + 0.5 * res, &bins_here)
                        on_bins += bins_here
                    if usable_off:
                        off_power += _band_power(power, row, bin_hz, off_hz - 0.5 * res, off_hz + 0.5 * res, &bins_here)
                        off_bins += bins_here
                candidate_contrast = (on_power / max(on_bins, 1)) / max(off_power / max(off_bins, 1), 1e-30)
                if not found or candidate_contrast >= best_contrast:
                    best_contrast = candidate_contrast
                    best_power = on_power
                    found = True
            comb[row] = best_power
            contrast[row] = best_contrast
    return tones_array, residual_array, upper_array, miss_array, comb_array, contrast_array
