from quiver.runtime.hints import closest_names, did_you_mean


def test_did_you_mean_names_the_closest_known_name() -> None:
    assert did_you_mean("max_dept", ["max_depth", "max_cost"]) == "did you mean 'max_depth'?"


def test_a_match_ignoring_case_comes_first() -> None:
    assert closest_names("Email", ["email", "mail", "emails"], most=2) == ["email", "emails"]


def test_several_names_are_listed_best_first() -> None:
    assert did_you_mean("colr", ["color", "colour", "cold"], most=2) == (
        "did you mean 'color', 'colour'?"
    )


def test_nothing_close_gives_the_fallback() -> None:
    assert did_you_mean("zzz", ["alpha", "beta"]) == ""
    assert did_you_mean("zzz", ["alpha"], fallback="check the name") == "check the name"
