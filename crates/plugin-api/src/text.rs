//! Character classes the edge's rules share: what other software drops from text without a
//! word, so that a value the policy judged is not read as another one further on.

/// True for a Unicode default-ignorable code point (soft hyphen, zero-width space and joiners,
/// bidirectional controls, variation selectors, BOM…): NFKC_Casefold, string trimming and many
/// servers delete them, so `/ad%C2%ADmin` would reach such an upstream as `/admin`, and a
/// claim `\u{200B}admin` as `admin`.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignorable_code_points_are_told_from_visible_ones() {
        for c in [
            '\u{AD}', '\u{200B}', '\u{200E}', '\u{2060}', '\u{FEFF}', '\u{180E}',
        ] {
            assert!(is_default_ignorable(c), "{c:?}");
        }
        for c in ['a', ' ', '-', '\u{A0}', 'é', '\u{2010}', '\u{1F600}'] {
            assert!(!is_default_ignorable(c), "{c:?}");
        }
    }
}
