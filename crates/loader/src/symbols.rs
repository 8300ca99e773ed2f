//! An image's symbols, for naming guest code: which function an exit's RIP
//! is in, as perf's symbol view does.

/// A named address (an ELF `STT_FUNC`, `STT_OBJECT` or assembler label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub addr: u64,
    /// Bytes the symbol covers; 0 when the image does not say (labels).
    pub size: u64,
}

/// Symbols sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbols {
    sorted: Vec<Symbol>,
}

impl Symbols {
    pub fn new(mut symbols: Vec<Symbol>) -> Symbols {
        symbols.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));
        symbols.dedup_by(|a, b| a.addr == b.addr && a.name == b.name);
        Symbols { sorted: symbols }
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Symbol> {
        self.sorted.iter()
    }

    /// The address of the symbol called `name`.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.sorted.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// The symbol `addr` falls in and the offset into it: the closest
    /// symbol at or below `addr`, if `addr` is inside its size (a symbol
    /// without a size reaches to the next symbol).
    pub fn lookup(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let i = self.sorted.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        // Of several symbols at one address, prefer one with a size.
        let at = self.sorted[i].addr;
        let first = self.sorted[..=i].partition_point(|s| s.addr < at);
        let s = self.sorted[first..=i].iter().find(|s| s.size != 0).unwrap_or(&self.sorted[i]);
        let offset = addr - s.addr;
        (s.size == 0 || offset < s.size).then_some((s, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, addr: u64, size: u64) -> Symbol {
        Symbol { name: name.into(), addr, size }
    }

    #[test]
    fn lookup_finds_the_enclosing_symbol() {
        let s = Symbols::new(vec![sym("main", 0x1000, 0x20), sym("start", 0x800, 0), sym("main_label", 0x1000, 0)]);
        assert_eq!(s.lookup(0x1010).map(|(s, o)| (s.name.as_str(), o)), Some(("main", 0x10)));
        assert_eq!(s.lookup(0x1020), None, "past main's size");
        assert_eq!(s.lookup(0xfff).map(|(s, o)| (s.name.as_str(), o)), Some(("start", 0x7ff)));
        assert_eq!(s.lookup(0x7ff), None);
        assert_eq!(s.address("start"), Some(0x800));
        assert_eq!(s.len(), 3);
    }
}
