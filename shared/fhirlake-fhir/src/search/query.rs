//! Parsing a search's query parameters into a [`super::SearchRequest`].
