//! Properties of the name, tag and reference parsers over generated input: what the grammar
//! accepts parses, and whatever parses reads back as itself from its own display.

use proptest::prelude::*;

use super::*;

/// One path component of the distribution grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
const COMPONENT: &str = "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}";
const TAG: &str = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

fn repo_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::string::string_regex(COMPONENT).expect("regex"), 1..5).prop_map(|c| c.join("/"))
}

proptest! {
    #[test]
    fn every_name_of_the_grammar_parses_and_reads_back(path in repo_path()) {
        let name: RepoName = path.parse().expect("a name of the grammar");
        let canonical = if path.contains('/') { path.clone() } else { format!("library/{path}") };
        prop_assert_eq!(name.as_str(), canonical.as_str());
        prop_assert_eq!(name.to_string().parse::<RepoName>().expect("its display"), name);
    }

    #[test]
    fn every_tag_of_the_grammar_parses_and_reads_back(tag in TAG) {
        let parsed: Tag = tag.parse().expect("a tag of the grammar");
        prop_assert_eq!(parsed.as_str(), tag.as_str());
        prop_assert_eq!(parsed.to_string().parse::<Tag>().expect("its display"), parsed);
    }

    #[test]
    fn whatever_name_parses_reads_back_from_its_display(s in "[a-z0-9._/-]{0,40}|\\PC{0,40}") {
        if let Ok(name) = s.parse::<RepoName>() {
            prop_assert_eq!(name.to_string().parse::<RepoName>().expect("its display"), name);
        }
    }

    #[test]
    fn whatever_image_reference_parses_reads_back_from_its_display(
        s in "([a-z0-9.-]{1,12}(:[0-9]{1,5})?/)?[a-z0-9._/-]{1,30}(:[A-Za-z0-9._-]{1,20})?(@sha256:[0-9a-f]{64})?|\\PC{0,60}"
    ) {
        if let Ok(image) = s.parse::<ImageRef>() {
            let again: ImageRef = image.to_string().parse().expect("its display");
            prop_assert_eq!(again.to_string(), image.to_string());
        }
    }
}
