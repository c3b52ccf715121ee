"""Seeded synthetic catalogue snapshots for the demo and the benchmarks.

Realistic in what matters to the sweep: multilingual titles and descriptions of ordinary goods
(with HTML remnants and missing descriptions), about 0.5% prohibited listings (miners,
accessories, software, guides, coins), a share of them disguised in innocent categories, and
look-alikes that must stay listed (coal mining tools, Minecraft toys, souvenir coins, gaming
graphics cards). Scales to tens of millions of rows across files and row groups; the same seed
always gives the same snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("category_path", pa.string()),
        ("category_id", pa.string()),
        ("country_of_sale", pa.string()),
        ("status", pa.string()),
        ("price", pa.float64()),
        ("currency", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

COUNTRIES = ["CN", "US", "RU", "ES", "BR", "PT", "MX", "DE", "FR", "GB", "TW", "HK", "KZ", "AR"]
COUNTRY_WEIGHTS = [0.22, 0.18, 0.1, 0.06, 0.1, 0.03, 0.05, 0.06, 0.05, 0.05, 0.03, 0.03, 0.02, 0.02]
LANGUAGE_OF = {
    "CN": "zh",
    "TW": "zt",
    "HK": "zt",
    "RU": "ru",
    "KZ": "ru",
    "ES": "es",
    "MX": "es",
    "AR": "es",
    "BR": "pt",
    "PT": "pt",
}
CURRENCY_OF = {
    "CN": "CNY",
    "US": "USD",
    "RU": "RUB",
    "ES": "EUR",
    "BR": "BRL",
    "PT": "EUR",
    "MX": "MXN",
    "DE": "EUR",
    "FR": "EUR",
    "GB": "GBP",
    "TW": "TWD",
    "HK": "HKD",
    "KZ": "KZT",
    "AR": "ARS",
}

ORDINARY = {
    "Home & Garden > Kitchen": {
        "en": [
            "Stainless steel frying pan {n}cm non-stick",
            "Ceramic coffee mug set of {n}",
            "Bamboo cutting board with juice groove",
            "Silicone baking mat, reusable",
        ],
        "zh": ["不锈钢炒锅 {n}厘米 不粘锅", "陶瓷咖啡杯 {n}只装", "竹制砧板 家用"],
        "zt": ["不鏽鋼炒鍋 {n}公分", "陶瓷馬克杯 {n}入"],
        "ru": ["Сковорода из нержавеющей стали {n} см", "Набор кружек {n} шт"],
        "es": ["Sartén antiadherente de acero {n} cm", "Juego de {n} tazas de cerámica"],
        "pt": ["Frigideira antiaderente {n} cm", "Jogo de {n} canecas de cerâmica"],
    },
    "Clothing > Women > Dresses": {
        "en": ["Women's summer floral dress, size {s}", "Long sleeve knit dress, {c}"],
        "zh": ["女士夏季碎花连衣裙 {s}码", "长袖针织连衣裙 {c}"],
        "zt": ["女裝夏季碎花洋裝 {s}"],
        "ru": ["Женское летнее платье в цветочек, размер {s}"],
        "es": ["Vestido floral de verano para mujer, talla {s}"],
        "pt": ["Vestido floral de verão feminino, tamanho {s}"],
    },
    "Consumer Electronics > Phone Accessories": {
        "en": [
            "USB-C fast charging cable {n}m braided",
            "Phone case for Galaxy S{n}, shockproof",
            "Wireless charger 15W, {c}",
            "Tempered glass screen protector, pack of {n}",
        ],
        "zh": ["USB-C 快充数据线 {n}米 编织", "无线充电器 15W {c}", "钢化玻璃膜 {n}片装"],
        "zt": ["USB-C 快充線 {n}米", "無線充電盤 15W"],
        "ru": ["Кабель USB-C для быстрой зарядки {n} м", "Чехол для телефона, противоударный"],
        "es": ["Cable USB-C de carga rápida {n} m", "Funda para teléfono antigolpes"],
        "pt": ["Cabo USB-C carregamento rápido {n} m", "Capa de celular à prova de choque"],
    },
    "Computer & Office > Computer Components > Graphics Cards": {
        "en": ["RTX 30{n}0 gaming graphics card 8GB, boxed", "RX 6{n}00 XT for gaming, like new"],
        "zh": ["RTX 30{n}0 游戏显卡 8G 盒装"],
        "zt": ["RTX 30{n}0 電競顯示卡"],
        "ru": ["Игровая видеокарта RTX 30{n}0 8 ГБ"],
        "es": ["Tarjeta gráfica gaming RTX 30{n}0 8GB"],
        "pt": ["Placa de vídeo gamer RTX 30{n}0 8GB"],
    },
    "Computer & Office > Computer Components > Power Supplies": {
        "en": ["ATX power supply {n}50W 80+ Gold modular", "SFX PSU 600W for small builds"],
        "zh": ["ATX 电源 {n}50W 金牌 全模组"],
        "zt": ["ATX 電源供應器 {n}50W 金牌"],
        "ru": ["Блок питания ATX {n}50 Вт 80+ Gold"],
        "es": ["Fuente de poder ATX {n}50W 80+ Gold"],
        "pt": ["Fonte ATX {n}50W 80 Plus Gold"],
    },
    "Sports & Outdoors > Camping": {
        "en": [
            "Ultralight tent for {n} persons, waterproof",
            "LED headlamp rechargeable {n}00 lumen",
        ],
        "zh": ["超轻帐篷 {n}人 防水", "LED 头灯 可充电"],
        "zt": ["超輕帳篷 {n}人"],
        "ru": ["Сверхлёгкая палатка на {n} человек"],
        "es": ["Tienda de campaña ultraligera {n} personas"],
        "pt": ["Barraca ultraleve para {n} pessoas"],
    },
    "Toys & Games > Building Toys": {
        "en": ["Building blocks castle set, {n}00 pieces", "Wooden train set with {n} wagons"],
        "zh": ["积木城堡套装 {n}00 块"],
        "zt": ["積木城堡組 {n}00 片"],
        "ru": ["Конструктор замок, {n}00 деталей"],
        "es": ["Bloques de construcción castillo, {n}00 piezas"],
        "pt": ["Blocos de montar castelo, {n}00 peças"],
    },
    "Home Appliances > Heaters": {
        "en": ["Oil filled radiator heater {n}000W", "Ceramic space heater with thermostat"],
        "zh": ["油汀取暖器 {n}000W 家用"],
        "zt": ["電暖器 {n}000W"],
        "ru": ["Масляный обогреватель {n}000 Вт"],
        "es": ["Radiador de aceite {n}000W"],
        "pt": ["Aquecedor a óleo {n}000W"],
    },
    "Books > Computers & Technology": {
        "en": [
            "Python programming for beginners, {n}rd edition",
            "Cooking for two, {n}th edition",
            "World atlas, large format",
        ],
        "zh": ["Python 编程入门 第{n}版", "区块链技术原理 (平装)"],
        "zt": ["Python 程式設計入門 第{n}版"],
        "ru": ["Программирование на Python, {n}-е издание"],
        "es": ["Programación en Python para principiantes"],
        "pt": ["Programação Python para iniciantes"],
    },
}

DESCRIPTIONS = {
    "en": [
        "Brand new in box.",
        "Fast shipping from our local warehouse.",
        "<p>High quality material, durable and easy to clean.</p>",
        "Please check the size chart before ordering.",
        "30-day returns &amp; 1 year warranty.",
        "Colour may vary slightly from the photo.<br>",
    ],
    "zh": [
        "全新正品，包邮。",
        "当天发货，七天无理由退换。",
        "<p>优质材料，经久耐用。</p>",
        "颜色以实物为准。",
    ],
    "zt": ["全新正品，免運費。", "當天出貨，七天鑑賞期。"],
    "ru": [
        "Новый товар в упаковке.",
        "Быстрая доставка по всей стране.",
        "<p>Качественные материалы.</p>",
    ],
    "es": [
        "Nuevo en caja.",
        "Envío rápido desde nuestro almacén.",
        "<p>Material de alta calidad.</p>",
    ],
    "pt": [
        "Novo na caixa.",
        "Envio rápido do nosso armazém.",
        "<p>Material de alta qualidade.</p>",
    ],
}

# (title, category path) of prohibited listings; the category decides whether it is an evasion.
PROHIBITED = [
    (
        "Bitmain Antminer S19 Pro 110TH/s BTC miner",
        "Computer & Office > Blockchain Miners > ASIC Miners",
    ),
    ("Whatsminer M30S++ 112T in stock", "Computer & Office > Blockchain Miners > ASIC Miners"),
    ("蚂蚁矿机 S19j Pro 100T 现货", "Computer & Office > Blockchain Miners > ASIC Miners"),
    ("螞蟻礦機 L7 9500M 現貨", "Computer & Office > Blockchain Miners > ASIC Miners"),
    ("Асик Antminer L3+ 504M, б/у", "Computer & Office > Blockchain Miners > ASIC Miners"),
    (
        "APW12 power supply for S19 series",
        "Computer & Office > Blockchain Miners > Miner Accessories",
    ),
    (
        "Hashboard for Antminer S9, tested",
        "Computer & Office > Blockchain Miners > Miner Accessories",
    ),
    ("Rig de minería 8 GPU RTX 3070", "Consumer Electronics > Cryptocurrency Mining > Mining Rigs"),
    (
        "Rig de mineração 6 placas RX 580",
        "Consumer Electronics > Cryptocurrency Mining > Mining Rigs",
    ),
    ("HiveOS licence 1 year", "Consumer Electronics > Cryptocurrency Mining > Mining Software"),
    ("Bitcoin 0.01 BTC instant delivery", "Digital Goods > Cryptocurrency > Coins"),
    ("Quark QRK 10,000 coins", "Digital Goods > Cryptocurrency > Coins"),
    ("Curso de minería de criptomonedas", "Consumer Electronics > Cryptocurrency Mining > Guides"),
    # evasions: disguised in innocent categories
    ("Heater 3250W 110T household, Model S19 Pro, SHA256", "Home Appliances > Heaters"),
    ("A.n.t-miner S 19 Pro data processing server", "Computer & Office > Servers > Rack Servers"),
    ("ＡＮＴＭＩＮＥＲ Ｓ１９ 95T", "Consumer Electronics > Phone Accessories"),
    (
        "Fonte 1800W APW7 para mineradora",
        "Computer & Office > Computer Components > Power Supplies",
    ),
    (
        "8 GPU workstation frame + 8x RX 580 (240MH/s ETH)",
        "Computer & Office > Computer Components > Graphics Cards",
    ),
    ("Ферма для майнинга 6 видеокарт", "Computer & Office > Computer Components > Graphics Cards"),
    ("Complete crypto mining course 2021", "Books > Computers & Technology"),
    ("1 ETH Ethereum sent within 1 hour", "Digital Goods > Software"),
    # ambiguous: a human decides (review)
    (
        "8 GPU open air frame for graphics cards",
        "Computer & Office > Computer Components > PC Cases",
    ),
    ("Used RTX 3070 x6 lot, ran 24/7", "Computer & Office > Computer Components > Graphics Cards"),
]
LOOKALIKES = [
    ("Coal mining drill bit 42mm, tungsten", "Tools > Industrial > Mining Equipment"),
    ("Gold pan and sluice box kit for prospecting", "Tools > Industrial > Mining Equipment"),
    ("Minecraft diamond pickaxe foam toy", "Toys & Games > Building Toys"),
    ("LED headlamp for miners, explosion proof", "Sports & Outdoors > Camping"),
    ("Bitcoin souvenir coin, gold plated, commemorative", "Collectibles > Coins"),
    ("Mastering Bitcoin 2nd edition", "Books > Computers & Technology"),
    (
        "RTX 3080 gaming graphics card, never used for mining",
        "Computer & Office > Computer Components > Graphics Cards",
    ),
    (
        "Dell 750W server power supply for PowerEdge R730",
        "Computer & Office > Servers > Server Power Supplies",
    ),
    ("Casco de minero con lámpara", "Tools > Industrial > Mining Equipment"),
    ("Ethernet cable Cat6 10m", "Computer & Office > Networking"),
    ("Data mining: concepts and techniques", "Books > Computers & Technology"),
]
TITLE_EXTRAS = [
    "new",
    "2021",
    "hot sale",
    "free shipping",
    "original",
    "in stock",
    "wholesale",
    "gift",
    "premium",
    "official store",
    "limited",
    "fast delivery",
    "best seller",
    "local warehouse",
    "包邮",
    "正品",
    "现货",
    "新款",
    "Новинка",
    "в наличии",
    "envío gratis",
    "frete grátis",
    "oferta",
    "promoção",
    "großhandel",
    "livraison gratuite",
    "✨",
    "🔥",
    "(2 pcs)",
    "(3 pack)",
    "XL",
    "M",
]
PROHIBITED_SHARE = 0.005
LOOKALIKE_SHARE = 0.004
MISSING_DESCRIPTION_SHARE = 0.1


def _category_id(path: str) -> str:
    return f"C-{sum(map(ord, path)) % 9973:04d}"


def _ordinary_pool() -> tuple[list[str], list[str], list[str]]:
    """Flattened (title template, category, language) of ordinary goods."""
    titles, categories, languages = [], [], []
    for category, by_lang in ORDINARY.items():
        for lang, templates in by_lang.items():
            for template in templates:
                titles.append(template)
                categories.append(category)
                languages.append(lang)
    return titles, categories, languages


def generate_table(rows: int, seed: int, start: int = 0) -> pa.Table:
    """`rows` listings, numbered from `start`, deterministic for (seed, start)."""
    rng = np.random.default_rng([seed, start])
    titles_t, categories_t, languages_t = _ordinary_pool()
    countries = rng.choice(COUNTRIES, size=rows, p=np.array(COUNTRY_WEIGHTS) / sum(COUNTRY_WEIGHTS))
    kind = rng.random(rows)
    numbers = rng.integers(1, 9, size=rows)
    sizes = rng.choice(["S", "M", "L", "XL"], size=rows)
    colours = rng.choice(["black", "white", "blue", "red", "green"], size=rows)
    sellers = rng.integers(0, max(rows // 25, 10), size=rows)
    desc_choice = rng.integers(0, 1000, size=(rows, 3))
    missing = rng.random(rows) < MISSING_DESCRIPTION_SHARE
    special = rng.integers(0, 1 << 30, size=rows)
    by_lang_index: dict[str, list[int]] = {}
    for i, lang in enumerate(languages_t):
        by_lang_index.setdefault(lang, []).append(i)
    pick = rng.integers(0, 1 << 30, size=rows)

    # Real listings are nearly all distinct (model numbers, SKUs, sizes, shipping notes): without
    # that, Parquet dictionary-encodes the text and a scan never touches most of it.
    skus = rng.integers(0, 36**6, size=rows)
    grams = rng.integers(50, 5000, size=rows)
    extras = rng.integers(0, len(TITLE_EXTRAS), size=(rows, 2))
    titles: list[str] = []
    descriptions: list[str | None] = []
    categories: list[str] = []
    for i in range(rows):
        k = kind[i]
        lang = LANGUAGE_OF.get(countries[i], "en")
        if k < PROHIBITED_SHARE:
            title, category = PROHIBITED[special[i] % len(PROHIBITED)]
            title = f"{title} #{numbers[i]}"
        elif k < PROHIBITED_SHARE + LOOKALIKE_SHARE:
            title, category = LOOKALIKES[special[i] % len(LOOKALIKES)]
        else:
            pool = by_lang_index[lang]
            t = pool[pick[i] % len(pool)]
            title = titles_t[t].format(n=numbers[i], s=sizes[i], c=colours[i])
            category = categories_t[t]
        sku = np.base_repr(int(skus[i]), 36)
        a, b = extras[i]
        titles.append(f"{title} {TITLE_EXTRAS[a]} {TITLE_EXTRAS[b]} {sku}")
        categories.append(category)
        if missing[i]:
            descriptions.append(None)
        else:
            sentences = DESCRIPTIONS[lang if lang in DESCRIPTIONS else "en"]
            body = " ".join(sentences[j % len(sentences)] for j in desc_choice[i])
            descriptions.append(f"{body} SKU {sku}-{desc_choice[i][0]}, {grams[i]} g.")
    updated = datetime(2021, 10, 1, tzinfo=UTC)
    return pa.table(
        {
            "listing_id": [f"L{start + i:010d}" for i in range(rows)],
            "seller_id": [f"S{s:07d}" for s in sellers],
            "title": titles,
            "description": descriptions,
            "category_path": categories,
            "category_id": [_category_id(c) for c in categories],
            "country_of_sale": countries.tolist(),
            "status": ["ACTIVE"] * rows,
            "price": np.round(rng.gamma(2.0, 40.0, size=rows), 2),
            "currency": [CURRENCY_OF[c] for c in countries],
            "updated_at": pa.array([updated] * rows, pa.timestamp("us", tz="UTC")),
        },
        schema=SCHEMA,
    )


def generate_snapshot(
    out: str | Path,
    *,
    rows: int,
    files: int = 1,
    row_group_size: int = 120_000,
    seed: int = 2021,
    chunk: int = 500_000,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write `rows` listings over `files` Parquet files (zstd), generated in bounded chunks;
    `progress` is told the rows of each chunk written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    written = []
    for f in range(files):
        first, last = f * per_file, min(rows, (f + 1) * per_file)
        if first >= last:
            break
        path = out / f"part-{f:05d}.parquet"
        with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
            for begin in range(first, last, chunk):
                table = generate_table(min(chunk, last - begin), seed, begin)
                writer.write_table(table, row_group_size=row_group_size)
                if progress is not None:
                    progress(table.num_rows)
        written.append(path)
    return written
