"""A row function: add Fahrenheit and a label; drop sensors that report the -40 fault value."""


def transform(row, ctx):
    if row["celsius"] == -40.0:
        return None
    fahrenheit = row["celsius"] * 9 / 5 + 32
    return {**row, "fahrenheit": round(fahrenheit, 2), "label": f"{row['site']}/{row['sensor']}"}
