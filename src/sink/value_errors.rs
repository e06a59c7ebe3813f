//! Every value of a range the target cannot take, not only the first: a
//! loader keeps converting after a rejected value so that one run names
//! them all (up to [`SHOWN`], with the total), instead of one fix, one
//! rerun, the next value.

/// Values listed in the message; the total counts all of them.
pub const SHOWN: usize = 10;

/// The conversion errors of one range.
#[derive(Debug, Default)]
pub struct ValueErrors {
    shown: Vec<String>,
    total: u64,
}

impl ValueErrors {
    pub fn push(&mut self, e: impl ToString) {
        self.total += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(e.to_string());
        }
    }

    /// A refused row: every value of it the target cannot take
    /// ([`MappedTable::row_errors`](crate::mapping::MappedTable::row_errors)),
    /// or `first` (the error the conversion stopped at) should that find none.
    pub fn push_row(&mut self, first: crate::mapping::ConversionError, all: Vec<crate::mapping::ConversionError>) {
        if all.is_empty() {
            self.push(first);
        }
        all.into_iter().for_each(|e| self.push(e));
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// One message naming every listed value and the total.
    pub fn message(&self) -> String {
        let mut m = if self.total == 1 {
            self.shown.join("")
        } else {
            format!("{} values cannot be written: {}", self.total, self.shown.join("; "))
        };
        if self.total > self.shown.len() as u64 {
            m.push_str(&format!(" (and {} more)", self.total - self.shown.len() as u64));
        }
        m.push_str("; nothing of this range was kept");
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_all_up_to_the_cap_with_the_total() {
        let mut e = ValueErrors::default();
        assert!(e.is_empty());
        for i in 0..12 {
            e.push(format!("key id={i}: bad"));
        }
        let m = e.message();
        assert!(m.starts_with("12 values cannot be written: key id=0: bad; key id=1: bad"), "{m}");
        assert!(m.contains("key id=9: bad (and 2 more)") && !m.contains("id=10"), "{m}");
    }
}
