//! Fixed-capacity rings used by the lethal-arrhythmia detector: allocated once at
//! construction, never again.

/// A ring of the last `capacity` values pushed, oldest first when iterated.
#[derive(Debug, Clone)]
pub(crate) struct Ring<T> {
    buf: Vec<T>,
    /// Index of the oldest element.
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![T::default(); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, v: T) {
        let cap = self.buf.len();
        if self.len == cap {
            self.buf[self.head] = v;
            self.head = self.wrap(self.head + 1);
        } else {
            let i = self.wrap(self.head + self.len);
            self.buf[i] = v;
            self.len += 1;
        }
    }

    /// `i mod capacity` for `i < 2 × capacity`: a compare instead of a division
    /// (rings are read in the assessments' inner loops).
    fn wrap(&self, i: usize) -> usize {
        let cap = self.buf.len();
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The `i`-th oldest element, `i < len`.
    pub(crate) fn get(&self, i: usize) -> T {
        self.buf[self.wrap(self.head + i)]
    }

    /// The `i`-th oldest element by reference, `i < len`.
    pub(crate) fn get_ref(&self, i: usize) -> &T {
        &self.buf[self.wrap(self.head + i)]
    }

    /// The newest element.
    pub(crate) fn newest(&self) -> Option<&T> {
        self.len.checked_sub(1).map(|i| self.get_ref(i))
    }

    /// The slot the next push writes (to bring its cache line in early).
    pub(crate) fn touch_next(&self) -> &T {
        let cap = self.buf.len();
        if self.len == cap {
            &self.buf[self.head]
        } else {
            &self.buf[self.wrap(self.head + self.len)]
        }
    }

    /// The `i`-th oldest element, mutably, `i < len`.
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut T {
        let i = self.wrap(self.head + i);
        &mut self.buf[i]
    }

    /// The elements as two slices, oldest first: the first from the oldest element to
    /// the end of the buffer, the second the rest (empty until the ring wraps).
    pub(crate) fn as_slices(&self) -> (&[T], &[T]) {
        let cap = self.buf.len();
        if self.head + self.len <= cap {
            (&self.buf[self.head..self.head + self.len], &[])
        } else {
            let (front, back) = self.buf.split_at(self.head);
            (back, &front[..self.head + self.len - cap])
        }
    }

    /// Oldest to newest. Walks the two slices of [`Ring::as_slices`]: no index
    /// arithmetic or bounds check per element (the assessments scan the rings of
    /// every lead several times per tick).
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = T> + '_ {
        let (a, b) = self.as_slices();
        a.iter().chain(b).copied()
    }

    /// Calls `f` on the elements by reference, newest first, until it returns
    /// false: the two slices of [`Ring::as_slices`] walked back without copying the
    /// elements.
    #[inline]
    pub(crate) fn scan_back(&self, mut f: impl FnMut(&T) -> bool) {
        let (older, newer) = self.as_slices();
        for part in [newer, older] {
            for x in part.iter().rev() {
                if !f(x) {
                    return;
                }
            }
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<T>()
    }
}

/// Samples indexed by an absolute, ever-increasing index; keeps the last
/// `capacity` (a power of two).
#[derive(Debug, Clone)]
pub(crate) struct History {
    buf: Vec<f32>,
    mask: u64,
    /// Number of samples written so far (the next index).
    n: u64,
}

impl History {
    pub(crate) fn new(min_capacity: usize) -> Self {
        let cap = min_capacity.max(2).next_power_of_two();
        Self {
            buf: vec![0.0; cap],
            mask: cap as u64 - 1,
            n: 0,
        }
    }

    pub(crate) fn push(&mut self, v: f32) {
        self.buf[(self.n & self.mask) as usize] = v;
        self.n += 1;
    }

    /// Pushes the samples of `v` in order: the same as [`History::push`] on each, as
    /// one or two copies.
    pub(crate) fn extend(&mut self, v: &[f32]) {
        let cap = self.buf.len();
        // Only the last `cap` samples stay.
        let skip = v.len().saturating_sub(cap);
        let v = &v[skip..];
        let s = ((self.n + skip as u64) & self.mask) as usize;
        let first = (cap - s).min(v.len());
        self.buf[s..s + first].copy_from_slice(&v[..first]);
        self.buf[..v.len() - first].copy_from_slice(&v[first..]);
        self.n += (skip + v.len()) as u64;
    }

    /// Number of samples written so far.
    pub(crate) fn count(&self) -> u64 {
        self.n
    }

    /// Oldest index still held.
    pub(crate) fn first(&self) -> u64 {
        self.n.saturating_sub(self.mask + 1)
    }

    /// Sample `i` (absolute); indices before [`History::first`] read the oldest held
    /// sample, indices at or after the count read the newest (callers stay inside).
    pub(crate) fn at(&self, i: u64) -> f32 {
        if self.n == 0 {
            return 0.0;
        }
        let i = i.clamp(self.first(), self.n - 1);
        self.buf[(i & self.mask) as usize]
    }

    /// Copies samples `[i, i + out.len())` into `out` (indices outside what is held
    /// read the nearest held sample).
    pub(crate) fn copy_to(&self, i: u64, out: &mut [f32]) {
        let end = i + out.len() as u64;
        if self.n == 0 || i < self.first() || end > self.n {
            for (k, o) in out.iter_mut().enumerate() {
                *o = self.at(i + k as u64);
            }
            return;
        }
        let cap = self.buf.len();
        let s = (i & self.mask) as usize;
        let first = (cap - s).min(out.len());
        out[..first].copy_from_slice(&self.buf[s..s + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<f32>()
    }

    /// Reads the slot `ahead` places past the one the next push writes (to bring its
    /// cache line in early).
    pub(crate) fn touch_next(&self, ahead: u64) -> f32 {
        self.buf[((self.n + ahead) & self.mask) as usize]
    }

    /// Reads the slot `back` places before the one the next push writes.
    pub(crate) fn touch_back(&self, back: u64) -> f32 {
        self.buf[(self.n.wrapping_sub(back) & self.mask) as usize]
    }
}

/// Median of up to 16 values (copied to the stack, no allocation); 0 when empty.
pub(crate) fn median_small(v: &[f32]) -> f32 {
    let n = v.len().min(16);
    if n == 0 {
        return 0.0;
    }
    let mut s = [0.0f32; 16];
    s[..n].copy_from_slice(&v[..n]);
    let s = &mut s[..n];
    s.sort_unstable_by(f32::total_cmp);
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::<u32>::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(r.iter().rev().collect::<Vec<_>>(), vec![4, 3, 2]);
        assert_eq!(r.len(), 3);
        assert_eq!((r.get(0), r.get(2)), (2, 4));
        let (a, b) = r.as_slices();
        assert_eq!([a, b].concat(), vec![2, 3, 4]);
        let mut s = Ring::<u32>::new(4);
        s.push(7);
        s.push(8);
        assert_eq!(s.as_slices(), (&[7, 8][..], &[][..]));
    }

    #[test]
    fn history_indexes_absolutely() {
        let mut h = History::new(4);
        for i in 0..10 {
            h.push(i as f32);
        }
        assert_eq!(h.first(), 6);
        assert_eq!(h.at(7), 7.0);
        assert_eq!(h.at(2), 6.0);
        assert_eq!(h.at(12), 9.0);
    }

    #[test]
    fn history_extend_is_pushes() {
        for cap in [2, 4, 8] {
            for start in 0..10 {
                for len in 0..20 {
                    let (mut a, mut b) = (History::new(cap), History::new(cap));
                    for i in 0..start {
                        a.push(i as f32);
                        b.push(i as f32);
                    }
                    let v: Vec<f32> = (0..len).map(|i| 100.0 + i as f32).collect();
                    for &x in &v {
                        a.push(x);
                    }
                    b.extend(&v);
                    assert_eq!(
                        (a.count(), &a.buf),
                        (b.count(), &b.buf),
                        "{cap} {start} {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn small_median() {
        assert_eq!(median_small(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_small(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_small(&[]), 0.0);
    }
}
