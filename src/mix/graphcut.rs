//! Multi-label MRF labelling on a 4-connected grid by α-β swap (Boykov, Veksler & Zabih 2001),
//! each swap solved exactly as a min cut with Dinic's max-flow. Used by PuzzleMix on its block
//! grid (at most 32×32 nodes), on the host. Written here because no maintained Rust crate offers
//! grid graph cuts; the graphs are tiny, so a plain Dinic is enough.

/// Energy: `Σ_p unary[p][l_p] + Σ_(p,q) w_pq · pairwise[l_p][l_q]` on a `rows × cols` grid, with
/// `w_down[r][c]` between (r, c) and (r+1, c) and `w_right[r][c]` between (r, c) and (r, c+1).
pub struct GridMrf {
    pub rows: usize,
    pub cols: usize,
    /// `rows·cols` rows of per-label costs.
    pub unary: Vec<Vec<f64>>,
    pub pairwise: Vec<Vec<f64>>,
    pub w_down: Vec<f64>,
    pub w_right: Vec<f64>,
}

impl GridMrf {
    fn labels(&self) -> usize {
        self.pairwise.len()
    }

    /// Neighbours of node p with the weight of the edge.
    fn neighbours(&self, p: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (r, c) = (p / self.cols, p % self.cols);
        let up = (r > 0).then(|| (p - self.cols, self.w_down[(r - 1) * self.cols + c]));
        let down = (r + 1 < self.rows).then(|| (p + self.cols, self.w_down[r * self.cols + c]));
        let left = (c > 0).then(|| (p - 1, self.w_right[r * (self.cols - 1) + c - 1]));
        let right = (c + 1 < self.cols).then(|| (p + 1, self.w_right[r * (self.cols - 1) + c]));
        [up, down, left, right].into_iter().flatten()
    }

    pub fn energy(&self, labels: &[usize]) -> f64 {
        let mut e: f64 = labels.iter().enumerate().map(|(p, &l)| self.unary[p][l]).sum();
        for p in 0..labels.len() {
            for (q, w) in self.neighbours(p) {
                if q > p {
                    e += w * self.pairwise[labels[p]][labels[q]];
                }
            }
        }
        e
    }

    /// α-β swap moves from `labels` until a full cycle over label pairs lowers the energy no more
    /// (at most `max_cycles` cycles).
    pub fn alpha_beta_swap(&self, mut labels: Vec<usize>, max_cycles: usize) -> Vec<usize> {
        let n_labels = self.labels();
        let mut energy = self.energy(&labels);
        for _ in 0..max_cycles {
            let mut improved = false;
            for a in 0..n_labels {
                for b in a + 1..n_labels {
                    let candidate = self.swap(&labels, a, b);
                    let e = self.energy(&candidate);
                    if e < energy - 1e-12 {
                        energy = e;
                        labels = candidate;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
        labels
    }

    /// The optimal relabelling of the nodes labelled `a` or `b` with `a`/`b`, others fixed.
    fn swap(&self, labels: &[usize], a: usize, b: usize) -> Vec<usize> {
        let active: Vec<usize> = (0..labels.len()).filter(|&p| labels[p] == a || labels[p] == b).collect();
        if active.is_empty() {
            return labels.to_vec();
        }
        let mut index = vec![usize::MAX; labels.len()];
        for (i, &p) in active.iter().enumerate() {
            index[p] = i;
        }
        // Nodes 0..k are the active sites, k = source (label a side), k+1 = sink (label b side).
        let k = active.len();
        let mut flow = MaxFlow::new(k + 2);
        for (i, &p) in active.iter().enumerate() {
            let (mut cost_a, mut cost_b) = (self.unary[p][a], self.unary[p][b]);
            for (q, w) in self.neighbours(p) {
                if index[q] == usize::MAX {
                    cost_a += w * self.pairwise[a][labels[q]];
                    cost_b += w * self.pairwise[b][labels[q]];
                } else if index[q] > i {
                    let cap = (w * self.pairwise[a][b]).max(0.0);
                    flow.add_edge(i, index[q], cap, cap);
                }
            }
            // Shift both by their minimum: a cut's cost changes by a constant, the optimum does not.
            let m = cost_a.min(cost_b);
            flow.add_edge(k, i, cost_b - m, 0.0); // cut when i ends on the sink side (label b)
            flow.add_edge(i, k + 1, cost_a - m, 0.0); // cut when i stays on the source side (a)
        }
        flow.max_flow(k, k + 1);
        let source_side = flow.reachable_from(k);
        let mut out = labels.to_vec();
        for (i, &p) in active.iter().enumerate() {
            out[p] = if source_side[i] { a } else { b };
        }
        out
    }
}

/// Dinic's algorithm on an adjacency list with paired reverse edges.
struct MaxFlow {
    graph: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<f64>,
}

impl MaxFlow {
    fn new(n: usize) -> Self {
        MaxFlow { graph: vec![Vec::new(); n], to: Vec::new(), cap: Vec::new() }
    }

    fn add_edge(&mut self, u: usize, v: usize, cap: f64, rev_cap: f64) {
        self.graph[u].push(self.to.len());
        self.to.push(v);
        self.cap.push(cap);
        self.graph[v].push(self.to.len());
        self.to.push(u);
        self.cap.push(rev_cap);
    }

    fn levels(&self, s: usize) -> Vec<i64> {
        let mut level = vec![-1i64; self.graph.len()];
        level[s] = 0;
        let mut queue = std::collections::VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            for &e in &self.graph[u] {
                let v = self.to[e];
                if self.cap[e] > 1e-12 && level[v] < 0 {
                    level[v] = level[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        level
    }

    fn push(&mut self, u: usize, t: usize, f: f64, level: &[i64], next: &mut [usize]) -> f64 {
        if u == t {
            return f;
        }
        while next[u] < self.graph[u].len() {
            let e = self.graph[u][next[u]];
            let v = self.to[e];
            if self.cap[e] > 1e-12 && level[v] == level[u] + 1 {
                let pushed = self.push(v, t, f.min(self.cap[e]), level, next);
                if pushed > 0.0 {
                    self.cap[e] -= pushed;
                    self.cap[e ^ 1] += pushed;
                    return pushed;
                }
            }
            next[u] += 1;
        }
        0.0
    }

    fn max_flow(&mut self, s: usize, t: usize) -> f64 {
        let mut total = 0.0;
        loop {
            let level = self.levels(s);
            if level[t] < 0 {
                return total;
            }
            let mut next = vec![0usize; self.graph.len()];
            loop {
                let f = self.push(s, t, f64::INFINITY, &level, &mut next);
                if f <= 0.0 {
                    break;
                }
                total += f;
            }
        }
    }

    /// Nodes reachable from `s` in the residual graph (the source side of a minimum cut).
    fn reachable_from(&self, s: usize) -> Vec<bool> {
        self.levels(s).iter().map(|&l| l >= 0).collect()
    }
}
